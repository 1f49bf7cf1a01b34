"""thrifty zeroshot: a classifier from label names alone (inference/zeroshot.py), read by predict and evaluate like
any model folder, and its bad input."""

import csv
import json
from pathlib import Path

import pytest
import torch

import thrifty
from thrifty.cli import main
from thrifty.inference.zeroshot import SCALE

REPO = Path(__file__).resolve().parents[2]
BANKING77_SAMPLE = REPO / "src" / "thrifty" / "resources" / "banking77_sample.csv"


def test_label_names_alone_classify_banking_intents_far_above_chance(tmp_path):
    with BANKING77_SAMPLE.open(encoding="utf-8") as f:
        labels = sorted({row["label"] for row in csv.DictReader(f)})
    folder = thrifty.zeroshot(labels, tmp_path / "zs")

    manifest = json.loads((folder / "thrifty.json").read_text())
    assert manifest["strategy"] == "zeroshot" and manifest["data"]["train_examples"] == 0
    assert manifest["label_descriptions"]["card_arrival"] == "card arrival"  # the name's words describe it
    from safetensors.torch import load_file

    head = load_file(str(folder / "sentence_head.safetensors"))  # one unit-length anchor per label, scaled
    assert torch.allclose(head["weight"].norm(dim=1), torch.full((len(labels),), SCALE), atol=1e-3)
    assert torch.count_nonzero(head["bias"]) == 0

    # A label's own description is nearest to itself: the head reads the encoder the way predict does
    predicted = thrifty.predict(folder, ["card arrival", "exchange rate", "lost or stolen card"])
    assert [p["label"] for p in predicted] == ["card_arrival", "exchange_rate", "lost_or_stolen_card"]

    metrics = thrifty.evaluate(folder, str(BANKING77_SAMPLE), output=tmp_path / "eval")
    assert len(labels) == 10 and metrics["accuracy"] > 0.5  # chance is 0.1; no example of any class was seen (0.875)


def test_codes_need_descriptions_and_are_then_read_through_them(tmp_path, capsys):
    code = main(["zeroshot", "--labels", "0,1", "--describe", "0=negative", "--describe", "1=positive",
                 "--output", str(tmp_path / "sentiment")])
    assert code == 0, capsys.readouterr().err
    assert "nothing was trained" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "sentiment" / "thrifty.json").read_text())
    assert manifest["labels"] == ["0", "1"] and manifest["label_descriptions"] == {"0": "negative", "1": "positive"}
    predicted = thrifty.predict(tmp_path / "sentiment", ["negative", "positive"])
    assert [p["label"] for p in predicted] == ["0", "1"]


@pytest.mark.parametrize("args, message", [
    (["--labels", "spam"], "at least 2 non-empty labels"),
    (["--labels", "ham,spam,ham"], "more than once"),
    (["--labels", "0,1", "--describe", "0=negative"], "--describe 1="),
    (["--labels", "ham,spam", "--describe", "eggs=breakfast"], "not among the labels"),
    (["--labels", "ham,spam", "--describe", "ham"], "must be LABEL=WORDS"),
    (["--labels", "ham,spam", "--max-length", "2"], "at least 8"),
    (["--labels", "ham,spam", "--model", "/no/such/folder"], "model folder not found"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "zs"
    code = main(["zeroshot", *args, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists() and not out.with_name("zs.tmp").exists()


def test_an_existing_model_folder_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "zs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["zeroshot", "--labels", "ham,spam", "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def test_a_decoder_is_refused_with_the_encoders_that_work(tiny_llama, tmp_path, capsys):
    assert main(["zeroshot", "--labels", "ham,spam", "--model", str(tiny_llama), "--output", str(tmp_path / "zs")]) == 2
    assert "sentence encoder" in capsys.readouterr().err and not (tmp_path / "zs").exists()


def test_labels_from_a_text_file(tmp_path, capsys):
    names = tmp_path / "labels.txt"
    names.write_text("sports\npolitics\n\ncooking\n", encoding="utf-8")
    assert main(["zeroshot", "--labels", str(names), "--output", str(tmp_path / "zs")]) == 0
    assert json.loads((tmp_path / "zs" / "thrifty.json").read_text())["labels"] == ["sports", "politics", "cooking"]
    predicted = thrifty.predict(tmp_path / "zs", ["The striker scored twice in the final", "Simmer the sauce for ten minutes"])
    assert [p["label"] for p in predicted] == ["sports", "cooking"]


def test_a_zero_shot_folder_is_the_base_of_a_fewshot_run_once_examples_exist(tiny_bert, small_csv, tmp_path):
    from tests.conftest import tiny_config

    start = thrifty.zeroshot(["neg", "pos"], tmp_path / "zs", model=str(tiny_bert))
    config = tiny_config(start, small_csv, epochs=2, batch_size=8, learning_rate=1e-3)
    config["strategy"] = {"name": "fewshot"}
    config["data"]["examples_per_class"] = 6
    thrifty.train(config, output=tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["strategy"] == "fewshot" and manifest["parent"]["model"] == str(start.resolve())
    assert manifest["base_model"]["name"] == str(tiny_bert)  # the zero-shot folder's own base, carried over
