"""Supervised fine-tuning of decoders (task causal_lm on instruction rows, on a tiny Llama): packing that keeps
attention inside each example, training that learns the answers and writes them (full, LoRA adapters, chat rows),
exact resume of packed rows, and the settings' checks. Reading the rows: tests/data/test_instructions.py."""

import json
import re

import pytest
import torch

import thrifty
from thrifty.config import GenerateConfig
from thrifty.data.instructions import pack
from thrifty.errors import ModelError
from thrifty.tasks.base import Encoded
from thrifty.tasks.language_modeling import CausalLanguageModeling

from tests.conftest import naming_rows



def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path




def test_packing_fills_rows_and_keeps_attention_inside_each_example(tiny_llama):
    rows = pack([5, 3, 8, 2, 6, 1], 8)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert all(sum([5, 3, 8, 2, 6, 1][i] for i in row) <= 8 for row in rows) and len(rows) == 4  # 25 tokens: 4 rows
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    model.config.use_cache = False  # as training loads it (inputs.load_model)
    a, b = [5, 6, 7, 8, 9], [10, 11, 12]
    encoded = Encoded([a + b], [[-100, 6, 7, 8, 9, -100, 11, 12]], {"segments": [[5, 3]]})
    batch = CausalLanguageModeling().make_batch(encoded, [0], 0, None)
    assert "attention_mask" not in batch and batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch["labels"][0, 5] == -100  # b's first token is not predicted from a's last
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(packed[5:], alone, atol=1e-5)  # b sees nothing of a


@pytest.mark.parametrize("packed", [False, True])
def test_logits_only_where_the_loss_reads_give_the_same_loss(tiny_llama, packed):
    """The head computes the scored positions only (logits_to_keep): the loss and its gradient are those of the full
    logits."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.config.use_cache = False
    a, b, c = [5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16]
    label = lambda ids, prompt: [-100] * prompt + ids[prompt:]
    if packed:
        encoded = Encoded([a + b, c], [label(a, 3) + label(b, 1), label(c, 2)], {"segments": [[5, 3], [4]]})
    else:
        encoded = Encoded([a, b, c], [label(a, 3), label(b, 1), label(c, 2)], {})
    losses, grads = [], []
    for only in (False, True):
        task = CausalLanguageModeling()
        task.attach(model)
        assert task.scored_logits_only
        task.scored_logits_only = only
        batch = task.make_batch(encoded, list(range(len(encoded))), 0, None)
        assert ("logits_to_keep" in batch) == only
        labels = batch.pop("labels")
        model.zero_grad()
        loss = task.loss(model(**batch).logits, labels)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(model.model.layers[0].mlp.up_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def sft_config(model, train, **sections):
    config = {"task": "causal_lm", "model": {"name": str(model)}, "data": {"train": str(train)},
              "train": {"epochs": 6, "batch_size": 8, "learning_rate": 1e-2, "num_threads": 2},
              "tracking": {"tensorboard": False, "energy": False}}
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.mark.parametrize("packing", [False, True])
def test_sft_learns_the_answers_and_generates_them(chat_llama, tmp_path, packing):
    train = write_jsonl(tmp_path / "train.jsonl", naming_rows(160))
    config = sft_config(chat_llama, train, data={"packing": packing, "max_length": 48},
                        generate={"eval_examples": 16, "max_new_tokens": 3})
    if packing:  # rows of several examples: fewer steps an epoch
        config["train"].update(epochs=12, batch_size=4)
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    validation = result.metrics["validation"]
    assert validation["exact_match"] >= 0.9 and validation["loss"] < 0.5
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["splits"]["train"]
    assert report["tokens_trained_on"] == 2 * 144  # the word and [SEP] of each of the 144 training rows
    assert ("packed_rows" in report) == packing and report.get("packed_rows", 0) < 144
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["generation"]["prompt_format"] == "prompt_completion" and manifest["format"] == "full"
    from thrifty.inference.generation import Generator

    generator = Generator.load(tmp_path / "run")
    assert not generator.chat_default  # trained on prompts as written: generated as written
    assert generator.generate(["item 7 is delta. name:", "item 9 is beta. name:"]) == ["delta", "beta"]
    if packing:
        return
    # thrifty evaluate on held-out rows, read as training read them: every answer written, scored and kept
    held_out = write_jsonl(tmp_path / "held_out.jsonl", naming_rows(200)[160:])
    metrics = thrifty.evaluate(tmp_path / "run", str(held_out))
    assert metrics["generated"] == metrics["examples"] == 40 and metrics["exact_match"] >= 0.9 and metrics["loss"] < 0.5
    out = tmp_path / "run" / "evaluations" / "held_out.jsonl"
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 40 and sum(a["exact_match"] for a in answers) == round(metrics["exact_match"] * 40)
    assert json.loads((out / "metrics.json").read_text())["data"]["rows_read"] == 40
    base = thrifty.evaluate(chat_llama, str(held_out), output=tmp_path / "base")  # the untrained model, the same rows
    assert base["exact_match"] < 0.5 and base["loss"] > 2 * metrics["loss"]


def test_lora_saves_an_adapter_that_writes_what_the_run_wrote(chat_llama, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", naming_rows(160))
    config = sft_config(chat_llama, train, strategy={"name": "lora"}, generate={"eval_examples": 16, "max_new_tokens": 3})
    config["train"].update(epochs=3, learning_rate=3e-2)
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    history = result.metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"] < 5.0  # learning (the untrained model's loss is ~10)
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert manifest["format"] == "lora_adapter"
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    from thrifty.inference.generation import Generator

    samples = result.metrics["validation"]["samples"]
    prompts = [s["prompt"].removeprefix("[CLS] ") for s in samples]
    assert Generator.load(tmp_path / "run").generate(prompts) == [s["generated"] for s in samples]


def test_chat_rows_train_and_a_model_without_a_template_is_refused(chat_llama, tiny_llama, tmp_path):
    rows = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for r in naming_rows(160)]
    train = write_jsonl(tmp_path / "chat.jsonl", rows)
    result = thrifty.train(sft_config(chat_llama, train, generate={"eval_examples": 16, "max_new_tokens": 3}),
                           output=tmp_path / "run", progress=False)
    assert result.metrics["validation"]["exact_match"] >= 0.9
    from thrifty.inference.generation import Generator

    generator = Generator.load(tmp_path / "run")
    assert generator.chat_default and generator.generate([[{"role": "user", "content": "item 5 is beta. name:"}]]) == ["beta"]
    with pytest.raises(ModelError, match="has no chat template"):
        thrifty.train(sft_config(tiny_llama, train), output=tmp_path / "plain", progress=False)


def test_a_run_trained_on_a_table_is_evaluated_on_a_table_or_on_prompt_completion_rows(chat_llama, tmp_path):
    import csv

    def table(path, rows):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "word"])
            writer.writerows([r["prompt"].removesuffix(". name:"), r["completion"].strip()] for r in rows)
        return path

    rows = naming_rows(200)
    config = sft_config(chat_llama, table(tmp_path / "train.csv", rows[:160]),
                        data={"text_column": "sentence", "label_column": "word", "prompt_template": "{text}. name:",
                              "completion_template": " {label}"}, generate={"max_new_tokens": 3})
    thrifty.train(config, output=tmp_path / "run", progress=False)
    from_table = thrifty.evaluate(tmp_path / "run", str(table(tmp_path / "test.csv", rows[160:])))
    from_rows = thrifty.evaluate(tmp_path / "run", str(write_jsonl(tmp_path / "test.jsonl", rows[160:])))
    assert from_table["exact_match"] >= 0.9 and from_table["generated"] == 40  # the template and columns of the run
    assert from_rows["exact_match"] == from_table["exact_match"] and from_rows["loss"] == pytest.approx(from_table["loss"])


def test_answers_written_in_training_are_capped_by_their_share_of_the_run(chat_llama, tmp_path, capsys):
    """A run may not spend more than generate.eval_time_share of its time writing evaluation answers: with a share
    too small for more, each evaluation writes its first batch (a seeded random sample) and says how many of how many;
    null writes them all."""
    rows = naming_rows(200)
    train, test = write_jsonl(tmp_path / "train.jsonl", rows[:160]), write_jsonl(tmp_path / "test.jsonl", rows[160:])
    settings = {"eval_examples": 16, "max_new_tokens": 3, "batch_size": 4}
    capped = sft_config(chat_llama, train, data={"test": str(test)}, generate={**settings, "eval_time_share": 1e-6})
    capped["train"]["epochs"] = 2
    result = thrifty.train(capped, output=tmp_path / "capped", progress=False)
    assert result.metrics["validation"]["generated"] == 4 and result.metrics["validation"]["asked"] == 16
    assert result.metrics["test"]["generated"] == 4 and result.metrics["test"]["asked"] == 40
    printed = capsys.readouterr()
    assert re.search(r"exact match \d\.\d{4} on 4 of 16 generated answers \(capped by generate\.eval_time_share\)",
                     printed.out + printed.err)
    whole = sft_config(chat_llama, train, data={"test": str(test)}, generate={**settings, "eval_time_share": None})
    whole["train"]["epochs"] = 2
    result = thrifty.train(whole, output=tmp_path / "whole", progress=False)
    assert result.metrics["validation"]["generated"] == 16 and result.metrics["test"]["generated"] == 40


def test_generation_settings_are_validated():
    from thrifty.errors import ConfigError

    with pytest.raises(ConfigError, match="temperature"):
        GenerateConfig(temperature=-1).validate()
    with pytest.raises(ConfigError, match="generate.eval_examples > 0"):
        thrifty.config.load_config(None, ["--task", "causal_lm", "--train.metric", "exact_match"])
    with pytest.raises(ConfigError, match="eval_time_share=1.5 must be between 0 and 1"):
        GenerateConfig(eval_time_share=1.5).validate()


def test_freeze_with_packing_resumes_after_ctrl_c_exactly(chat_llama, tmp_path, monkeypatch):
    """The one loop's exact resume holds for packed SFT rows: Ctrl-C at step 5, --resume, the same losses and weights."""
    from safetensors.torch import load_file

    from thrifty.errors import Interrupted

    train = write_jsonl(tmp_path / "train.jsonl", naming_rows(96))
    config = sft_config(chat_llama, train, strategy={"name": "freeze", "frozen_layers": 1},
                        data={"packing": True, "max_length": 32})
    config["train"].update(epochs=2, batch_size=4, checkpoint_every_steps=3)
    whole = thrifty.train(config, output=tmp_path / "whole", progress=False)
    monkeypatch.setenv("THRIFTY_FAULT_AT_STEP", "5:INT")
    with pytest.raises(Interrupted):
        thrifty.train(config, output=tmp_path / "cut", progress=False)
    monkeypatch.delenv("THRIFTY_FAULT_AT_STEP")
    resumed = thrifty.train(resume=tmp_path / "cut", progress=False)
    read = lambda run: [json.loads(l)["loss"] for l in (run / "train_log.jsonl").read_text().splitlines()]
    assert read(resumed.run_dir) == pytest.approx(read(whole.run_dir), abs=1e-6)
    a, b = (load_file(str(run / "model" / "model.safetensors")) for run in (whole.run_dir, resumed.run_dir))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    assert whole.metrics["model"]["strategy"] == "freeze"


def test_estimates_count_a_packed_sft_run(chat_llama, tmp_path):
    """FLOPs and memory are counted on the meta device: a decoder that trains without its key/value cache, packed."""
    from thrifty.cost.estimate import estimate

    train = write_jsonl(tmp_path / "train.jsonl", naming_rows(80))
    config = sft_config(chat_llama, train, strategy={"name": "lora"}, data={"packing": True, "max_length": 40})
    config["cost"] = {"reuse_calibration": False}
    result = estimate(config, calibration_steps=2)
    assert result["train_flops"] > 0 and result["peak_memory_bytes"] > 0 and result["predicted_seconds"] >= 0
    assert result["tokens_per_epoch"] == 72 * 10  # the 72 training rows of 10 tokens, packed


def test_evaluating_a_decoder_names_bad_input_in_one_line(chat_llama, tmp_path, capsys):
    from thrifty.cli import main

    plain = tmp_path / "notes.txt"
    plain.write_text("a plain sentence\n")
    assert main(["evaluate", str(chat_llama), "--data", str(plain)]) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluated on prompts with their answers" in err and len(err.splitlines()) == 1
    rows = write_jsonl(tmp_path / "rows.jsonl", naming_rows(4))
    assert main(["evaluate", str(chat_llama), "--data", str(rows), "--backend", "onnx"]) == 2
    assert "PyTorch backend" in capsys.readouterr().err
