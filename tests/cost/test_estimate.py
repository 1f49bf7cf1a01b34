"""`thrifty estimate`: the contract's keys, arithmetic that adds up, and nothing written but the estimate."""

import json
import math

import pytest
import yaml

from thrifty.cli import main
from thrifty.cost.estimate import estimate

from tests.conftest import tiny_config

CONTRACT = ("trainable_parameters", "tokens_per_epoch", "train_flops", "peak_memory_bytes", "predicted_seconds", "cost")


def test_estimate_adds_up(tiny_bert, small_csv):
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    e = estimate(config, calibration_steps=2)
    assert all(key in e for key in CONTRACT)
    assert e["examples"] == 60 and e["steps"] == 2 * math.ceil(60 / 8)  # 80 rows, 25% carved for validation
    assert e["train_flops"] == pytest.approx(2 * e["train_flops_per_epoch"])
    assert e["padded_tokens_per_epoch"] >= e["tokens_per_epoch"] > 0
    assert e["peak_memory_bytes"] == sum(e["memory"][k] for k in ("weights", "gradients", "optimizer", "activations"))
    parts = ("training_seconds", "evaluation_seconds", "frozen_cache_seconds")
    assert e["predicted_seconds"] == pytest.approx(sum(e["predicted"][k] for k in parts), abs=0.2)
    assert e["predicted_seconds"] > 0
    seconds = sum(e["predicted"][k] for k in parts)  # unrounded, unlike predicted_seconds
    assert e["cost"] == pytest.approx(seconds / 3600 * e["hardware"]["price_per_hour"], rel=0.05)
    lora = estimate(tiny_config(tiny_bert, small_csv, epochs=2) | {"strategy": {"name": "lora"}}, calibration_steps=2)
    assert lora["trainable_parameters"] < e["trainable_parameters"] / 5
    assert lora["memory"]["optimizer"] < e["memory"]["optimizer"] / 5


def test_cli_prints_one_json_object_and_writes_nothing_else(tiny_bert, small_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_bert, small_csv)))
    before = set(tmp_path.iterdir())
    code = main(["estimate", str(config), "--train.epochs", "1", "--json", "--output", str(tmp_path / "estimate.json")])
    out = capsys.readouterr().out
    assert code == 0
    printed = json.loads(out)  # stdout is exactly one JSON object
    assert all(key in printed for key in CONTRACT) and printed["epochs"] == 1
    assert json.loads((tmp_path / "estimate.json").read_text()) == printed
    assert set(tmp_path.iterdir()) - before == {tmp_path / "estimate.json"}  # no run folder


def test_bad_config_fails_with_one_line(tiny_bert, tmp_path, capsys):
    code = main(["estimate", "--data.train", str(tmp_path / "missing.csv"), "--model.name", str(tiny_bert)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.csv" in err
