"""`thrifty estimate`: the contract's keys, arithmetic that adds up, and nothing written but the estimate."""

import json
import math

import pytest
import torch
import yaml

from thrifty.cli import main
from thrifty.cost.estimate import estimate
from thrifty.models.precision import has_fast_bf16

from tests.conftest import shared_file, tiny_config

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
    seconds = sum(e["predicted"][k] for k in parts)  # each part rounded to 0.01 s, unlike the cost
    price = e["hardware"]["price_per_hour"]
    # tiny models train in hundredths of a second, so the parts' rounding (up to 0.005 s each) is the tolerance
    assert e["cost"] == pytest.approx(seconds / 3600 * price, rel=0.01, abs=len(parts) * 0.005 / 3600 * price)
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


def test_calibration_is_kept_per_machine_model_strategy_and_batch_shape(tiny_bert, small_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_config(tiny_bert, small_csv, epochs=1)
    first = estimate(config, calibration_steps=2)["calibration"]
    assert first["cached"] is False and len(list((tmp_path / "cache" / "calibration").glob("*.json"))) == 1
    again = estimate(config | {"train": {**config["train"], "epochs": 3}}, calibration_steps=2)["calibration"]
    assert again["cached"] is True  # epochs do not change the FLOP rate: the kept timing is reused
    assert again["seconds_per_train_flop"] == first["seconds_per_train_flop"]
    other_batch = estimate(config | {"train": {**config["train"], "batch_size": 4}}, calibration_steps=2)["calibration"]
    assert other_batch["cached"] is False
    other_strategy = estimate(config | {"strategy": {"name": "lora"}}, calibration_steps=2)["calibration"]
    assert other_strategy["cached"] is False
    fresh = estimate(config | {"cost": {"reuse_calibration": False}}, calibration_steps=2)["calibration"]
    assert fresh["cached"] is False
    assert len(list((tmp_path / "cache" / "calibration").glob("*.json"))) == 3  # the fresh one replaced its entry
    # the precision the run computes in is part of the key: fp32 is timed apart from auto where auto means bf16
    fp32 = estimate(config | {"train": {**config["train"], "precision": "fp32"}}, calibration_steps=2)
    assert fp32["precision"] == "fp32"
    assert fp32["calibration"]["cached"] is (not has_fast_bf16(torch.device("cpu")))


@pytest.mark.slow
def test_estimate_is_within_25_percent_of_the_real_run(tmp_path, monkeypatch):
    """The estimate against the run it predicts: all-MiniLM-L6-v2 on 1,500 SST-2 sentences, 1 epoch, a first
    calibration (empty cache). Compared with what the estimate covers: training + evaluation + frozen-cache time."""
    import thrifty

    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path / "cache"))
    config = {"data": {"train": str(shared_file("sst2", "stsa.binary.train")),
                       "validation": str(shared_file("sst2", "stsa.binary.dev")), "max_train_examples": 1500},
              "train": {"epochs": 1, "batch_size": 32, "num_threads": 2},
              "tracking": {"tensorboard": False, "energy": False}}
    predicted = estimate(config)["predicted_seconds"]
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    measured = result.metrics["history"][-1]["seconds"]
    assert 0.75 <= predicted / measured <= 1.25, f"predicted {predicted:.1f} s, measured {measured:.1f} s"


def test_fewshot_estimate_counts_the_head_fit_and_the_self_training_pass(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=1) | {"strategy": {"name": "fewshot"}}
    plain = estimate(config, calibration_steps=2)
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("".join(f"an unlabelled review of film {i}, quite long to embed\n" for i in range(200)))
    config["data"]["unlabelled"] = str(unlabelled)
    with_pool = estimate(config, calibration_steps=2)
    assert with_pool["train_flops"] == pytest.approx(plain["train_flops"])  # training is the same
    assert with_pool["eval_flops_each"] > 2 * plain["eval_flops_each"]  # 200 texts to label against 60 labelled
