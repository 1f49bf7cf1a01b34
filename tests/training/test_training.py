"""The training loop on a tiny model: golden losses, exact resume after kill -9, Ctrl-C, run-folder safety."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import thrifty
from thrifty.errors import RunDirError
from thrifty.runs.run_dir import read_status

from tests.conftest import tiny_config

# Losses of the first steps of `tiny_config` on `small_csv` with the tiny BERT (seeded init, seed 7).
# A change here means the loop's numerics changed: check it is intended, then update the numbers.
GOLDEN_LOSSES = [0.6937798857688904, 0.6953500509262085, 0.6989644765853882, 0.6940432190895081,
                 0.6929071545600891, 0.691860556602478]  # fp32, fast dropout masks, random batches (a set this small:
#                                                          data/batching.py)
# The same with train.prune_last_layer off: the pruned last layer's dropout masks cover one position instead of
# all, so its masks differ (each mask takes one seed from the generator, so the rest of the stream stays in step)
# and the losses differ from step 1 on in the fourth digit, by chance, not by bias.
GOLDEN_LOSSES_UNPRUNED = [0.6937687397003174, 0.6953653693199158, 0.6989232301712036, 0.6940388679504395,
                          0.6929492950439453, 0.691852331161499]


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_golden_losses(tiny_bert, small_csv, tmp_path):
    # fp32 (recorded so): on a CPU with bf16, train.precision auto would be bf16 (test_golden_losses.py checks that)
    result = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1, precision="fp32"), output=tmp_path / "run",
                           progress=False)
    got = losses(result.run_dir)[: len(GOLDEN_LOSSES)]
    assert got == pytest.approx(GOLDEN_LOSSES, abs=2e-4)
    config = tiny_config(tiny_bert, small_csv, epochs=1, prune_last_layer=False, precision="fp32")
    unpruned = thrifty.train(config, output=tmp_path / "unpruned", progress=False)
    assert losses(unpruned.run_dir)[: len(GOLDEN_LOSSES)] == pytest.approx(GOLDEN_LOSSES_UNPRUNED, abs=2e-4)


def test_losses_read_back_in_batches_are_the_same_log(tiny_bert, small_csv, tmp_path):
    # The GPU path reads losses back every N steps instead of every step; the log must not change.
    each = thrifty.train(tiny_config(tiny_bert, small_csv), output=tmp_path / "each", progress=False)
    batched = thrifty.train(tiny_config(tiny_bert, small_csv, sync_every_steps=4), output=tmp_path / "batched", progress=False)
    lines = [json.loads(l) for l in (batched.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, batched.metrics["train"]["steps"] + 1))
    assert losses(batched.run_dir) == losses(each.run_dir)
    assert [l["grad_norm"] for l in lines] == [json.loads(l)["grad_norm"] for l in
                                                (each.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert all(l["seconds"] > 0 for l in lines)
    assert [h["accuracy"] for h in batched.metrics["history"]] == [h["accuracy"] for h in each.metrics["history"]]


def test_same_seed_same_losses_other_seed_differs(tiny_bert, small_csv, tmp_path):
    a = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "a", progress=False)
    b = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "b", progress=False)
    c = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1, seed=8), output=tmp_path / "c", progress=False)
    assert losses(a.run_dir) == losses(b.run_dir)
    assert losses(a.run_dir) != losses(c.run_dir)


def test_run_folder_contents(tiny_bert, small_csv, tmp_path):
    result = thrifty.train(tiny_config(tiny_bert, small_csv), output=tmp_path / "run", progress=False)
    run = result.run_dir
    for name in ("config.yaml", "metrics.json", "data_report.json", "train_log.jsonl", "run.json",
                 "confusion_matrix_validation.png", "model/model.safetensors", "model/tokenizer.json", "model/thrifty.json"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "checkpoint").exists()  # removed after success unless output.keep_checkpoints
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "micro_f1"):
        assert key in metrics["validation"]
    for key in ("seconds", "examples", "tokens_per_second"):
        assert metrics["train"][key] > 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert Path(config["data"]["train"]).is_absolute()
    model_config = json.loads((run / "model/config.json").read_text())
    assert set(model_config["id2label"].values()) == {"neg", "pos"}  # label names travel with the model
    assert read_status(run)["status"] == "complete"


def test_run_folder_is_never_overwritten(tiny_bert, small_csv, tmp_path):
    thrifty.train(tiny_config(tiny_bert, small_csv, max_steps=2), output=tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(RunDirError, match="already exists; choose another --output, add --overwrite"):
        thrifty.train(tiny_config(tiny_bert, small_csv, max_steps=2), output=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    thrifty.train(tiny_config(tiny_bert, small_csv, max_steps=3), output=tmp_path / "run", overwrite=True, progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["steps"] == 3


def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_bert, small_csv, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    with pytest.raises(RunDirError, match="not a thrifty run folder"):
        thrifty.train(tiny_config(tiny_bert, small_csv), output=tmp_path / "precious", overwrite=True, progress=False)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_early_stopping_and_best_model_restored(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=30, eval_every_steps=2, early_stopping_patience=2,
                         learning_rate=1e-2, metric="loss")
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    history = result.metrics["history"]
    assert result.metrics["train"]["stop_reason"] == "early_stopping"
    assert result.metrics["train"]["steps"] < 30 * 8
    best = min(h["loss"] for h in history)
    assert result.metrics["best"]["value"] == pytest.approx(best)
    assert result.metrics["validation"]["loss"] == pytest.approx(best, abs=1e-5)  # the best, not the last, model


def run_cli(args, env_extra=None, cwd=None):
    env = {**os.environ, "THRIFTY_TEST_THREADS": "2", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "thrifty", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def write_config(tmp_path, config) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow  # a real process killed and resumed: minutes of the fast tier, run in the full suite
def test_resume_after_kill_9_matches_uninterrupted(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=3, checkpoint_every_steps=3, eval_every_steps=4)
    config["train"]["learning_rate"] = 3e-3
    config["output"] = {"keep_checkpoints": True}
    path = write_config(tmp_path, config)
    whole = run_cli(["train", str(path), "--output", str(tmp_path / "whole"), "--no-progress"])
    assert whole.returncode == 0, whole.stderr

    crashed = run_cli(["train", str(path), "--output", str(tmp_path / "crash"), "--no-progress"],
                      env_extra={"THRIFTY_FAULT_AT_STEP": "11:KILL"})
    assert crashed.returncode == -9  # really killed, mid-epoch, two steps after the step-9 checkpoint
    assert read_status(tmp_path / "crash")["status"] == "running"
    assert not (tmp_path / "crash" / "metrics.json").exists()  # a crashed run never looks complete

    resumed = run_cli(["train", "--resume", str(tmp_path / "crash"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 9" in resumed.stdout
    assert losses(tmp_path / "crash") == pytest.approx(losses(tmp_path / "whole"), abs=1e-6)
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "crash" / "metrics.json").read_text())
    assert [h["loss"] for h in b["history"]] == pytest.approx([h["loss"] for h in a["history"]], abs=1e-6)
    assert b["validation"]["accuracy"] == a["validation"]["accuracy"]
    wa = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "crash" / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow  # a real process interrupted (Ctrl-C) and resumed: run in the full suite
def test_ctrl_c_stops_at_a_resumable_point(tiny_bert, small_csv, tmp_path):
    path = write_config(tmp_path, tiny_config(tiny_bert, small_csv, epochs=2))
    stopped = run_cli(["train", str(path), "--output", str(tmp_path / "run"), "--no-progress"],
                      env_extra={"THRIFTY_FAULT_AT_STEP": "5:INT"})
    assert stopped.returncode == 130
    assert f"thrifty train --resume {tmp_path / 'run'}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert read_status(tmp_path / "run")["status"] == "interrupted"
    assert (tmp_path / "run" / "checkpoint" / "state.pt").exists()
    resumed = run_cli(["train", "--resume", str(tmp_path / "run"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 5" in resumed.stdout
    assert read_status(tmp_path / "run")["status"] == "complete"


def test_resume_a_complete_run_is_refused(tiny_bert, small_csv, tmp_path):
    thrifty.train(tiny_config(tiny_bert, small_csv, max_steps=2), output=tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="already complete"):
        thrifty.train(resume=tmp_path / "run", progress=False)


def test_disk_full_while_checkpointing(tiny_bert, small_csv, tmp_path, monkeypatch):
    import errno

    import thrifty.runs.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(RunDirError, match="disk full while writing a checkpoint"):
        thrifty.train(tiny_config(tiny_bert, small_csv), output=tmp_path / "run", progress=False)
    assert read_status(tmp_path / "run")["status"] == "failed"
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "checkpoint").exists()  # no half-written checkpoint passed off as one


@pytest.mark.parametrize("strategy", ["freeze", "head", "lora"])
def test_each_strategy_trains_saves_and_predicts(tiny_bert, small_csv, tmp_path, strategy):
    config = tiny_config(tiny_bert, small_csv, epochs=1)
    config["strategy"] = {"name": strategy, "frozen_layers": 1, "merge_lora": False}
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    assert result.metrics["model"]["trainable_parameters"] < result.metrics["model"]["total_parameters"]
    model_dir = tmp_path / "run" / "model"
    if strategy == "lora":
        assert (model_dir / "adapter_model.safetensors").exists() and not (model_dir / "model.safetensors").exists()
    preds = thrifty.predict(tmp_path / "run", ["I loved this wonderful film", "I hated it"])
    assert [set(p) >= {"label", "probabilities"} for p in preds] == [True, True]
    assert sum(preds[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_merged_lora_gives_the_same_predictions_as_the_adapter(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=1, learning_rate=5e-3)
    config["strategy"] = {"name": "lora", "merge_lora": True}
    thrifty.train(config, output=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    merged = thrifty.predict(tmp_path / "run", ["I loved this wonderful film"], backend="torch")[0]["probabilities"]

    from peft import PeftModel

    from thrifty.inference.predictor import Predictor
    from thrifty.models.loading import load_classifier

    predictor = Predictor.load(tmp_path / "run", backend="torch")  # fp32 on both sides
    base, _ = load_classifier(str(tiny_bert), ["neg", "pos"])
    predictor.model = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    adapter = predictor.predict(["I loved this wonderful film"])[0]["probabilities"]
    assert adapter == pytest.approx(merged, abs=1e-5)


def test_stop_at_metric_ends_the_run_when_the_target_is_reached(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=20, eval_every_steps=2, stop_at_metric=0.0)
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    assert result.metrics["train"]["stop_reason"] == "target_reached"
    assert result.metrics["train"]["steps"] == 2  # the first evaluation already meets an accuracy of 0
    assert result.metrics["best"]["seconds"] == result.metrics["history"][0]["seconds"] > 0


def test_history_carries_the_wall_clock_from_the_first_step(tiny_bert, small_csv, tmp_path):
    # `seconds` is step + evaluation time; `wall_seconds` is a stopwatch from the first step, so it also counts the
    # checkpoint written after each evaluation and the logging between steps: never less, and always growing.
    config = tiny_config(tiny_bert, small_csv, epochs=2, evaluations_per_epoch=2)
    metrics = thrifty.train(config, output=tmp_path / "run", progress=False).metrics
    history, train = metrics["history"], metrics["train"]
    assert len(history) == 4
    assert all(h["wall_seconds"] >= h["seconds"] - 0.01 for h in history)
    assert all(a["wall_seconds"] < b["wall_seconds"] for a, b in zip(history, history[1:]))
    # the loop's total runs on to the end of the last checkpoint, after the last evaluation; setup is reported apart
    assert train["loop_wall_seconds"] >= history[-1]["wall_seconds"]
    assert 0 < train["setup_seconds"] and train["setup_seconds"] + train["loop_wall_seconds"] <= train["seconds"] + 0.01
