"""One rule for the number format: training's `train.precision: auto`, and prediction's `--backend auto` from the
label agreement a model folder records."""

import dataclasses
import json

import pytest
import torch

from thrifty import traits
from thrifty.errors import ConfigError
from thrifty.inference.predictor import Predictor
from thrifty.models import precision
from thrifty.models.precision import AGREEMENT_KEY, has_fast_bf16, prediction_backend, training_precision

CPU = torch.device("cpu")
BF16_HERE = has_fast_bf16(CPU)


@pytest.fixture
def no_bf16(monkeypatch):
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False)


@pytest.fixture
def avx512_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)


def test_auto_trains_in_bf16_only_where_the_cpu_has_it(avx512_bf16):
    chosen = training_precision("auto", CPU, "classification")
    assert chosen.name == "bf16" and chosen.autocast_dtype == torch.bfloat16 and chosen.accelerate == "bf16"
    assert "AVX512-BF16" in chosen.reason
    assert training_precision("fp32", CPU, "classification").name == "fp32"
    assert training_precision("bf16", CPU, "token_classification").name == "bf16"


def test_auto_is_fp32_without_bf16_and_asking_for_it_is_refused(no_bf16):
    chosen = training_precision("auto", CPU, "classification")
    assert chosen.name == "fp32" and chosen.autocast_dtype is None and "no bf16 instructions" in chosen.reason
    with pytest.raises(ConfigError, match="train.precision=bf16 needs bf16 instructions.*use fp32"):
        training_precision("bf16", CPU, "classification")
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        training_precision("fp16", CPU, "classification")


def test_a_task_whose_accuracy_bf16_costs_keeps_fp32_and_says_why(avx512_bf16, monkeypatch):
    kept = dataclasses.replace(traits.TASKS["seq2seq"], trains_in_bf16=False, bf16_note="lost 1.2 points of ROUGE-L")
    monkeypatch.setitem(traits.TASKS, "seq2seq", kept)
    chosen = training_precision("auto", CPU, "seq2seq")
    assert chosen.name == "fp32" and "seq2seq keeps fp32 (lost 1.2 points of ROUGE-L)" in chosen.reason
    assert training_precision("bf16", CPU, "seq2seq").name == "bf16"  # asked for: done


def test_prediction_backend_follows_the_recorded_agreement(avx512_bf16):
    assert prediction_backend({}, CPU)[0] == "torch"  # nothing recorded: fp32
    agreed = {AGREEMENT_KEY: {"label_agreement": 0.998, "labels": 872}}
    backend, reason = prediction_backend(agreed, CPU)
    assert backend == "torch-bf16" and "99.80% of 872" in reason
    backend, reason = prediction_backend({AGREEMENT_KEY: {"label_agreement": 0.99, "labels": 872}}, CPU)
    assert backend == "torch" and "below 99.5%" in reason


def test_an_agreement_measured_on_other_hardware_is_not_trusted(avx512_bf16):
    backend, reason = prediction_backend({AGREEMENT_KEY: {"label_agreement": 1.0, "labels": 10,
                                                          "hardware": "GPU bf16"}}, CPU)
    assert backend == "torch" and "measured on GPU bf16" in reason


def test_prediction_backend_is_fp32_without_bf16_whatever_was_recorded(no_bf16):
    backend, reason = prediction_backend({AGREEMENT_KEY: {"label_agreement": 1.0, "labels": 10}}, CPU)
    assert backend == "torch" and "no bf16 instructions" in reason


@pytest.mark.skipif(not BF16_HERE, reason="this CPU has no bf16 instructions: no agreement is measured here")
def test_training_records_the_agreement_and_auto_predicts_by_it(tiny_run, tmp_path):
    import shutil

    import thrifty

    manifest = json.loads((tiny_run / "model" / "thrifty.json").read_text())
    record = manifest[AGREEMENT_KEY]
    assert record["split"] == "validation" and record["labels"] == 16 and record["label_agreement"] == 1.0
    assert record["cpu"] == precision.cpu_name() and record["hardware"] in ("AMX", "AVX512-BF16")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["model"]["bf16_agreement"] == record and metrics["model"]["precision"] == "bf16"
    auto = Predictor.load(tiny_run)
    assert auto.backend == "torch-bf16" and {p.dtype for p in auto.model.parameters()} == {torch.bfloat16}
    # a folder whose bf16 labels disagreed: auto keeps fp32, and evaluate says which backend ran and why
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    manifest[AGREEMENT_KEY] = {**record, "label_agreement": 0.9}
    (copy / "model" / "thrifty.json").write_text(json.dumps(manifest))
    data = tmp_path / "check.csv"
    data.write_text("text,label\nI loved it,pos\nI hated it,neg\n", encoding="utf-8")
    evaluated = thrifty.evaluate(copy, str(data), output=tmp_path / "eval")
    assert evaluated["backend"] == "torch" and "below 99.5%" in evaluated["backend_reason"]


def test_a_resumed_run_keeps_the_precision_it_started_with(avx512_bf16, tmp_path):
    from thrifty.config import Config
    from thrifty.runs.run_dir import set_status
    from thrifty.training.recipe import _run_precision

    config = Config()
    assert _run_precision(config, CPU, None).name == "bf16"  # a new run: auto on bf16 hardware
    set_status(tmp_path, "interrupted", precision="fp32")  # started elsewhere, in fp32
    kept = _run_precision(config, CPU, tmp_path)
    assert kept.name == "fp32" and "resumed" in kept.reason


def test_an_estimate_for_another_machine_does_not_apply_this_ones_rule(no_bf16):
    from thrifty.config import Config
    from thrifty.cost.shape import _precision

    config = Config()
    config.train.precision = "fp16"  # for a GPU profile (cost.hardware): this CPU could not train it, and need not
    assert _precision(config) == "fp16"


def test_a_failing_agreement_check_leaves_the_run_complete_and_fp32_by_default(tiny_bert, small_csv, tmp_path,
                                                                               monkeypatch):
    import thrifty
    from thrifty.inference import agreement
    from tests.conftest import tiny_config

    def broken(folder, split):
        raise RuntimeError("no memory left for a second copy")

    monkeypatch.setattr(agreement, "record_bf16_agreement", broken)
    result = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["bf16_agreement"] == {"error": "RuntimeError: no memory left for a second copy"}
    assert result.metrics["validation"] and AGREEMENT_KEY not in json.loads(
        (tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert Predictor.load(tmp_path / "run").backend == "torch"
