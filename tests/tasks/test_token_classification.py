"""Token classification end to end on a tiny model: CoNLL in, entities out, a model folder that stands alone."""

import json
import shutil

import pytest
import torch

import thrifty
from thrifty.cli import main
from thrifty.tasks.base import Encoded
from thrifty.tasks.token_classification import IGNORE, TokenClassification, entity_metrics, group_entities

from tests.conftest import tiny_config

NAMES = ["John", "Mary", "Ahmed", "Olga", "Pierre", "Keiko", "Luis", "Anna"]
SURNAMES = ["Smith", "Khan", "Ivanova", "Dubois", "Tanaka", "Garcia"]
CITIES = ["Paris", "Berlin", "Lagos", "Tokyo", "Lima", "Oslo"]


def write_conll(path, sentences, docstart=True):
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines += [f"{w} NNP B-NP {t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sentences(n, offset=0):
    out = []
    for i in range(n):
        name, surname, city = NAMES[(i + offset) % 8], SURNAMES[(i + offset) % 6], CITIES[(i * 5 + offset) % 6]
        if i % 2:
            out.append(([name, "visited", city, "."], ["B-PER", "O", "B-LOC", "O"]))
        else:
            out.append(([name, surname, "works", "in", city, "today"], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]))
    return out


def ner_config(model, files, **train):
    config = tiny_config(model, files["train"], **{"epochs": 6, "learning_rate": 5e-3, **train})
    config["task"] = "token_classification"
    config["data"] = {"train": str(files["train"]), "validation": str(files["validation"]), "test": str(files["test"])}
    return config


@pytest.fixture(scope="module")
def trained_ner(tmp_path_factory, tiny_bert):
    """One tiny NER run shared by the tests below (training it again per test would only cost time)."""
    folder = tmp_path_factory.mktemp("ner")
    files = {"train": write_conll(folder / "train.txt", sentences(96)),
             "validation": write_conll(folder / "valid.txt", sentences(24, offset=3)),
             "test": write_conll(folder / "test.txt", sentences(24, offset=5))}
    result = thrifty.train(ner_config(tiny_bert, files), output=folder / "run", progress=False)
    return result, files


def test_ner_learns_entities_and_reports_seqeval_metrics(trained_ner):
    result, _ = trained_ner
    test = result.metrics["test"]
    assert test["f1"] > 0.5  # a random tagger finds (almost) none of the 48 entities
    assert set(test["per_type"]) == {"PER", "LOC"}
    for key in ("f1", "precision", "recall", "loss", "per_type"):
        assert key in result.metrics["validation"]
    assert result.metrics["best"]["metric"] == "f1"
    assert (result.run_dir / "per_type_f1_test.png").exists()
    manifest = json.loads((result.run_dir / "model" / "thrifty.json").read_text())
    assert manifest["task"] == "token_classification"
    assert manifest["preprocessing"]["label_alignment"] == "first_subtoken"
    assert manifest["labels"][0] == "O"


def test_copied_model_folder_predicts_and_evaluates_alone(trained_ner, tmp_path, capsys):
    result, files = trained_ner
    copy = tmp_path / "elsewhere" / "my-ner"
    shutil.copytree(result.run_dir / "model", copy)
    entities = thrifty.predict(copy, ["Mary Smith visited Tokyo."])[0]["entities"]
    for e in entities:
        assert "Mary Smith visited Tokyo."[e["start"]:e["end"]] == e["text"]
        assert 0 < e["score"] <= 1
    assert main(["evaluate", str(copy), "--data", str(files["test"])]) == 0
    out = capsys.readouterr().out
    assert "PER" in out and "LOC" in out and "precision" in out
    metrics = json.loads((copy / "evaluations" / "test.txt" / "metrics.json").read_text())
    assert metrics["f1"] == pytest.approx(result.metrics["test"]["f1"], abs=1e-9)  # same model, same data, same score


def test_predict_pre_tokenised_jsonl(trained_ner, tmp_path, capsys):
    result, _ = trained_ner
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"tokens": ["Olga", "Khan", "works", "in", "Lima", "today"]}) + "\n")
    assert main(["predict", str(result.run_dir), "--input", str(path)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["tokens"] == ["Olga", "Khan", "works", "in", "Lima", "today"] and len(line["tags"]) == 6
    for e in line["entities"]:
        assert line["text"][e["start"]:e["end"]] == e["text"]


def test_warm_start_same_and_changed_labels(trained_ner, tiny_bert, tmp_path):
    result, files = trained_ner
    same = ner_config(tiny_bert, files, epochs=1)
    same["model"]["name"] = str(result.run_dir)
    warm = thrifty.train(same, output=tmp_path / "same", progress=False)
    assert warm.metrics["validation"]["f1"] >= result.metrics["validation"]["f1"] - 0.2  # it starts trained
    manifest = json.loads((warm.run_dir / "model" / "thrifty.json").read_text())
    assert manifest["parent"]["model"] == str((result.run_dir / "model").resolve())
    report = json.loads((warm.run_dir / "data_report.json").read_text())["warm_start"]
    assert report["added"] == [] and report["dropped"] == []

    # New data with an ORG type and no LOC: ORG rows are new, LOC rows dropped, PER kept.
    changed = [([n, "joined", "Acme", "."], ["B-PER", "O", "B-ORG", "O"]) for n in NAMES] * 4
    files2 = {k: write_conll(tmp_path / f"{k}2.txt", changed) for k in ("train", "validation", "test")}
    config = ner_config(tiny_bert, files2, epochs=1)
    config["model"]["name"] = str(result.run_dir / "model")
    mapped = thrifty.train(config, output=tmp_path / "changed", progress=False)
    report = json.loads((mapped.run_dir / "data_report.json").read_text())["warm_start"]
    # every type seen gets its B- and I- tag (data/tagged.complete_bio), so ORG comes with I-ORG
    assert mapped.metrics["model"]["labels"] == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert report["added"] == ["B-ORG", "I-ORG"]
    assert sorted(report["dropped"]) == ["B-LOC", "I-LOC"]
    assert report["kept"] == ["O", "B-PER", "I-PER"]


def test_encode_aligns_first_subtokens_and_counts_lost_words(minilm_dir):
    from transformers import AutoTokenizer

    from thrifty.data.tagged import TaggedSplit

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    split = TaggedSplit([["Washington", "unbelievably", "\u200b", "ok"]], [[1, 0, 0, 0]])
    encoded = TokenClassification().encode(tokenizer, split, 64, None)
    labels = encoded.targets[0]
    assert labels[0] == -100 and labels[-1] == -100  # [CLS], [SEP]
    assert [l for l in labels if l != -100] == [1, 0, 0]  # one label per word that has tokens
    assert encoded.extra["words_without_tokens"] == 1  # the zero-width space becomes no token: counted
    short = TokenClassification().encode(tokenizer, split, 4, None)
    assert short.extra["words_truncated"] >= 1


def test_entity_grouping_and_metrics():
    assert group_entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"], [0.9, 0.7, 1, 0.8, 0.6]) == [
        ("PER", 0, 1, pytest.approx(0.8)), ("LOC", 3, 3, 0.8), ("LOC", 4, 4, 0.6)]
    m = entity_metrics([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert m["precision"] == 1.0 and m["recall"] == 0.5 and m["per_type"]["LOC"]["recall"] == 0.0


@pytest.mark.parametrize("strategy", ["freeze", "lora"])
def test_other_strategies_train_a_tagger(tiny_bert, tmp_path, strategy):
    files = {"train": write_conll(tmp_path / "train.txt", sentences(48)),
             "validation": write_conll(tmp_path / "valid.txt", sentences(12, offset=3)),
             "test": write_conll(tmp_path / "test.txt", sentences(12, offset=5))}
    config = ner_config(tiny_bert, files, epochs=1)
    config["strategy"] = {"name": strategy, "frozen_layers": 1}
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    assert result.metrics["model"]["trainable_parameters"] < result.metrics["model"]["total_parameters"]
    if strategy == "freeze":  # the frozen bottom is computed once and reused: per position, as tagging needs
        assert result.metrics["train"]["frozen_cache"]["layers"] == 1
    tags = thrifty.predict(result.run_dir, ["Anna visited Oslo ."])
    assert "entities" in tags[0]
    if strategy == "lora":  # a warm start from an adapter continues from the merged weights
        again = ner_config(tiny_bert, files, epochs=1)
        again["model"]["name"] = str(result.run_dir)
        warm = thrifty.train(again, output=tmp_path / "warm", progress=False)
        assert json.loads((warm.run_dir / "model" / "thrifty.json").read_text())["parent"] is not None


def test_estimate_and_budget_work_for_a_tagger(tiny_bert, tmp_path, capsys):
    files = {"train": write_conll(tmp_path / "train.txt", sentences(48)),
             "validation": write_conll(tmp_path / "valid.txt", sentences(12, offset=3)),
             "test": write_conll(tmp_path / "test.txt", sentences(12, offset=5))}
    config = ner_config(tiny_bert, files, epochs=50)
    path = tmp_path / "ner.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    assert main(["estimate", str(path), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["steps"] == 50 * 6 and estimate["predicted_seconds"] > 0
    result = thrifty.train(path, output=tmp_path / "run", progress=False, overrides=["--budget.max_minutes", "0.3"])
    assert result.metrics["budget"]["spent_seconds"] <= 0.3 * 60 * 1.1 + 1
    assert result.metrics["budget"]["metric"] == "f1"


def test_token_loss_weighs_every_token_the_same_in_length_grouped_batches():
    # Two batches of one example each: 2 scored tokens and 6 scored tokens, the same per-token loss. A per-batch
    # mean would give both batches the same loss (each short-batch token counting 3x); the fitted loss gives the
    # long batch 3x the short one, and its scale is the mean scored tokens per batch (here (2 + 6) / 2 = 4).
    task = TokenClassification()
    short = [IGNORE, 1, 0, IGNORE]
    long = [IGNORE, 1, 0, IGNORE, 2, 1, 0, 1, IGNORE]
    task.fit_loss(Encoded([[0] * len(short), [0] * len(long)], [short, long]), batch_size=1)
    assert task.scored_tokens_per_batch == 4.0

    def batch(targets):
        logits = torch.zeros(1, len(targets), 3)  # uniform: every scored token's loss is log(3)
        return task.loss(logits, torch.tensor([targets]))

    per_token = torch.log(torch.tensor(3.0))
    torch.testing.assert_close(batch(short), 2 * per_token / 4)
    torch.testing.assert_close(batch(long), 6 * per_token / 4)
    unfitted = TokenClassification()  # before fit_loss (estimates): the plain per-batch mean
    torch.testing.assert_close(unfitted.loss(torch.zeros(1, len(long), 3), torch.tensor([long])), per_token)
