"""Budgets: the graceful stop (time and FLOPs), the planner, and budgets that cannot buy one step."""

import json

import pytest

from thrifty.cli import main
from thrifty.config import Config
from thrifty.cost.budget import BudgetTracker, limits_for
from thrifty.cost.estimate import estimate
from thrifty.cost.hardware import get_hardware
from thrifty.errors import ConfigError
from thrifty.training.recipe import train

from tests.conftest import tiny_config


def _with(config: dict, **budget) -> dict:
    return config | {"budget": budget}


def test_time_budget_stops_gracefully_and_keeps_the_best_model(tiny_bert, small_csv, tmp_path):
    limit_minutes = 0.1  # 6 s: far less than 300 epochs of the tiny model
    config = _with(tiny_config(tiny_bert, small_csv, epochs=300), max_minutes=limit_minutes, plan=False)
    result = train(config, output=tmp_path / "run", progress=False)
    b = result.metrics["budget"]
    assert b["stopped_by_budget"] and b["stopped_by"] == "time" and result.metrics["train"]["stop_reason"] == "budget"
    assert b["limit_seconds"] == pytest.approx(6.0)
    # The contract's floor is 10% or 30 s; the reserve for evaluating and saving keeps it much tighter.
    assert b["spent_seconds"] <= b["limit_seconds"] * 1.1 + 1.0
    assert 0 < result.metrics["train"]["steps"] < 300 * 8
    history = result.metrics["history"]
    assert history[-1]["step"] == result.metrics["train"]["steps"]  # the weights at the stop were evaluated
    assert result.metrics["validation"]["accuracy"] == max(h["accuracy"] for h in history)  # the best one was kept
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_flop_budget_is_never_exceeded(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=4)
    e = estimate(config, calibration_steps=1)
    per_epoch = e["train_flops_per_epoch"] + e["eval_flops_each"]
    limit = 2.5 * per_epoch
    result = train(_with(config, max_flops=limit, plan=False), output=tmp_path / "run", progress=False)
    b = result.metrics["budget"]
    assert b["stopped_by"] == "flops" and b["limit_flops"] == limit
    assert 1.5 * per_epoch < b["spent_flops"] <= limit  # counted per real batch: it stops before going over
    assert result.metrics["train"]["steps"] < e["steps"]


def test_cost_budget_is_a_time_budget_at_the_machine_price():
    config = Config()
    config.budget.max_cost, config.budget.max_minutes = 0.01, 60
    config.cost.price_per_hour = 0.36
    limits = limits_for(config.validate(), get_hardware("auto", 0.36))
    assert limits.seconds == pytest.approx(100.0) and limits.binding == "cost"  # 0.01 / 0.36 per hour = 100 s < 60 min
    tracker = BudgetTracker(limits, seconds_before=90.0)
    assert tracker.over(5.0, 0.0) is None and tracker.over(20.0, 0.0) == "cost"


def test_cost_budget_without_a_price_is_refused():
    config = Config()
    config.budget.max_cost = 1.0
    with pytest.raises(ConfigError, match="set cost.price_per_hour"):
        limits_for(config, get_hardware("h200"))


@pytest.mark.parametrize("key,value", [("max_minutes", "0"), ("max_cost", "-1"), ("max_flops", "abc")])
def test_bad_budget_values_are_rejected(key, value, capsys):
    code = main(["config", f"--budget.{key}", value])
    err = capsys.readouterr().err
    assert code == 2 and f"budget.{key}" in err


def test_energy_is_measured_when_codecarbon_is_installed(tiny_bert, small_csv, tmp_path):
    pytest.importorskip("codecarbon")
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    config["tracking"]["energy"] = True
    energy = train(config, output=tmp_path / "run", progress=False).metrics["budget"]["energy"]
    assert energy["kwh"] > 0 and energy["co2_kg"] > 0 and energy["country"] == "USA"
    assert energy["kwh"] == pytest.approx(energy["cpu_kwh"] + energy["ram_kwh"] + energy["gpu_kwh"], rel=1e-6)
