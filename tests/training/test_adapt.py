"""`thrifty adapt` on tiny models: masked LM for an encoder, causal LM for a decoder, the adapted model as the base of
a classifier (full and fewshot), exact resume after kill -9, and bad input."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import thrifty
from thrifty.errors import ConfigError, ModelError

from tests.conftest import tiny_config
from tests.training.test_training import losses, run_cli, write_config


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.txt"
    words = ["blender", "knife", "pan", "kettle", "toaster", "whisk"]
    path.write_text("".join(f"the {words[i % 6]} number {i} works well and cleans up easily\n" for i in range(60)))
    return path


def adapt_config(model_dir, data, **train):
    config = tiny_config(model_dir, data, **{"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, **train})
    config["data"] = {"train": str(data), "validation_fraction": 0.2}
    return config


def test_masked_lm_adaptation_then_a_classifier_from_it(tiny_bert, reviews, small_csv, tmp_path, capsys):
    result = thrifty.adapt(adapt_config(tiny_bert, reviews), output=tmp_path / "adapted", progress=False)
    out = capsys.readouterr().out
    assert "ships no trained masked_lm head" in out and "cls.predictions.transform" in out
    m = result.metrics
    assert m["model"]["task"] == "masked_lm" and m["validation"]["tokens_scored"] > 0
    assert m["validation"]["loss"] < math.log(30522)  # learnt something: below a uniform guess over the vocabulary
    assert m["validation"]["perplexity"] == pytest.approx(math.exp(m["validation"]["loss"]))
    manifest = json.loads((tmp_path / "adapted" / "model" / "thrifty.json").read_text())
    assert manifest["task"] == "masked_lm" and manifest["labels"] == []
    with pytest.raises(ModelError, match="adapted by thrifty adapt"):
        thrifty.predict(tmp_path / "adapted", ["a text"])
    # The adapted folder is the base of a classifier: its encoder weights, a new head.
    config = tiny_config(tmp_path / "adapted", small_csv, epochs=1)
    clf = thrifty.train(config, output=tmp_path / "clf", progress=False)
    assert clf.metrics["model"]["task"] == "classification"
    adapted = load_file(str(tmp_path / "adapted" / "model" / "model.safetensors"))
    tuned = load_file(str(tmp_path / "clf" / "model" / "model.safetensors"))
    key = "bert.embeddings.word_embeddings.weight"
    base = load_file(str(tiny_bert / "model.safetensors"))
    assert not torch.equal(adapted[key], base["embeddings.word_embeddings.weight"])  # adaptation changed the encoder
    assert tuned[key].shape == adapted[key].shape
    fewshot = tiny_config(tmp_path / "adapted", small_csv, epochs=2)
    fewshot["strategy"] = {"name": "fewshot"}
    fewshot["data"]["examples_per_class"] = 4
    assert thrifty.train(fewshot, output=tmp_path / "fs", progress=False).metrics["model"]["strategy"] == "fewshot"


def test_causal_lm_adaptation_of_a_decoder(tiny_llama, reviews, tmp_path):
    result = thrifty.adapt(adapt_config(tiny_llama, reviews), output=tmp_path / "run", progress=False)
    assert result.metrics["model"]["task"] == "causal_lm"
    assert result.metrics["history"][-1]["loss"] < result.metrics["history"][0]["loss"]


@pytest.mark.slow  # a real process killed and resumed: minutes of the fast tier, run in the full suite
def test_adapt_resume_after_kill_9_masks_and_trains_exactly_as_uninterrupted(tiny_bert, reviews, tmp_path):
    config = adapt_config(tiny_bert, reviews, epochs=3, checkpoint_every_steps=4, eval_every_steps=6)
    config["output"] = {"keep_checkpoints": True}
    path = write_config(tmp_path, config)
    data = ["--data", str(reviews), "--no-progress"]
    whole = run_cli(["adapt", str(path), "--output", str(tmp_path / "whole"), *data])
    assert whole.returncode == 0, whole.stderr
    crashed = run_cli(["adapt", str(path), "--output", str(tmp_path / "crash"), *data],
                      env_extra={"THRIFTY_FAULT_AT_STEP": "6:KILL"})
    assert crashed.returncode == -9
    resumed = run_cli(["adapt", "--resume", str(tmp_path / "crash"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 4" in resumed.stdout
    assert losses(tmp_path / "crash") == pytest.approx(losses(tmp_path / "whole"), abs=1e-6)
    a = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "crash" / "model" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_adapt_bad_input_is_one_line_and_exit_2(tiny_bert, reviews, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    config = write_config(tmp_path, adapt_config(tiny_bert, reviews))
    for args, message in (
        (["adapt", str(config), "--data", str(empty)], "has no text to learn from"),
        (["adapt", "--output", str(tmp_path / "x")], "needs unlabelled text: --data FILE"),
        (["adapt", str(config), "--data", str(reviews), "--strategy.name", "fewshot"], "learns from unlabelled text"),
    ):
        result = run_cli([*args, "--output", str(tmp_path / "out")] if "--output" not in args else args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_lm_tasks_refuse_what_needs_labels():
    with pytest.raises(ConfigError, match="learns from unlabelled text"):
        thrifty.config.config_from_dict({"task": "masked_lm", "data": {"examples_per_class": 8}}).validate()
