"""Sequence to sequence on a tiny randomly initialised T5 (conftest.tiny_t5: no pre-trained seq2seq weights exist offline
on this project's machines): teacher-forced batches, training that learns a mapping, generation scored by exact
match and ROUGE-L, `thrifty generate` on the result, and the bad inputs."""

import json

import pytest

import thrifty
from thrifty.errors import DataError
from thrifty.tasks import get_task
from thrifty.tasks.base import Encoded

WORDS = ["alpha", "beta", "gamma", "delta"]


def write_pairs(path, n, first=0):
    path.write_text("".join(json.dumps({"source": f"item {i} is {WORDS[i % 4]}", "target": WORDS[i % 4]}) + "\n"
                            for i in range(first, first + n)))
    return path


def test_batches_are_teacher_forced():
    task = get_task("seq2seq")
    task.decoder_start_token_id = 0
    encoded = Encoded([[5, 6, 7], [8, 9]], [[11, 12, 102], [13, 102]], {})
    batch = task.collate(encoded, [0, 1], pad_id=0)
    assert batch["labels"].tolist() == [[11, 12, 102], [13, 102, -100]]
    assert batch["decoder_input_ids"].tolist() == [[0, 11, 12], [0, 13, 102]]  # shifted right, padding not -100
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def seq2seq_config(model, train, test, **train_settings):
    return {"task": "seq2seq", "model": {"name": str(model)}, "data": {"train": str(train), "test": str(test)},
            "train": {"epochs": 8, "batch_size": 8, "learning_rate": 1e-2, "num_threads": 2, **train_settings},
            "generate": {"eval_examples": 16, "max_new_tokens": 4, "eval_time_share": None},  # every test answer
            "tracking": {"tensorboard": False, "energy": False}}


def test_seq2seq_learns_a_mapping_and_generates_it(tiny_t5, tmp_path):
    train, test = write_pairs(tmp_path / "train.jsonl", 160), write_pairs(tmp_path / "test.jsonl", 40, first=500)
    result = thrifty.train(seq2seq_config(tiny_t5, train, test), output=tmp_path / "run", progress=False)
    validation, history = result.metrics["validation"], result.metrics["history"]
    assert validation["loss"] < 0.1 * history[0]["loss"]
    assert validation["exact_match"] >= 0.9 and validation["rouge_l"] >= 0.9
    assert result.metrics["test"]["generated"] == 40 and result.metrics["test"]["exact_match"] >= 0.9  # all of test
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["task"] == "seq2seq" and manifest["generation"]["max_new_tokens"] == 4
    from thrifty.inference.generation import Generator

    assert Generator.load(tmp_path / "run").generate(["item 5 is beta"]) == ["beta"]
    metrics = thrifty.evaluate(tmp_path / "run", str(test), output=tmp_path / "evaluation")  # as the run scored test
    assert metrics["exact_match"] == result.metrics["test"]["exact_match"] and metrics["rouge_l"] >= 0.9
    assert len((tmp_path / "evaluation" / "answers.jsonl").read_text().splitlines()) == 40


def test_lora_adapts_t5s_attention_and_mlp_and_its_adapter_generates(tiny_t5, tmp_path):
    train, test = write_pairs(tmp_path / "train.jsonl", 48), write_pairs(tmp_path / "test.jsonl", 8, first=500)
    config = seq2seq_config(tiny_t5, train, test, epochs=2)
    config["strategy"] = {"name": "lora"}
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    assert result.metrics["history"][-1]["loss"] < result.metrics["history"][0]["loss"]
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["format"] == "lora_adapter"
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q", "k", "v", "o", "wi", "wo"}
    from thrifty.inference.generation import Generator

    written = Generator.load(tmp_path / "run").generate(["item 5 is beta"])  # the adapter on its base, merged
    assert len(written) == 1 and isinstance(written[0], str)


def test_rows_without_a_target_are_named(tiny_t5, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"source": "a", "target": "b"}) + "\n" + json.dumps({"source": "only"}) + "\n")
    with pytest.raises(DataError, match=r"line 2: the row has no 'target'"):
        thrifty.train({"task": "seq2seq", "model": {"name": str(tiny_t5)}, "data": {"train": str(bad)}},
                      output=tmp_path / "run", progress=False)
