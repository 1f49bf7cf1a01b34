"""strategy fewshot: class-balanced batches, the pair loss, label anchors, the fitted head, and whole runs on a tiny
model (train, predict, resume after kill -9, bad input)."""

import json
from collections import Counter

import pytest
import torch
import yaml
from safetensors.torch import load_file

import thrifty
from thrifty.config import FewShotConfig
from thrifty.errors import ConfigError, DataError, ModelError
from thrifty.runs.run_dir import read_status
from thrifty.training.recipe import CONFIG_FILE
from thrifty.tasks import fewshot as fewshot_task
from thrifty.tasks.fewshot import (automatic_end_to_end_epochs, class_balanced_batches, label_descriptions, pair_loss,
                                   recommended_epochs)

from tests.conftest import tiny_config
from tests.training.test_training import losses, run_cli, write_config


def test_batches_hold_several_classes_with_pairs_of_each_and_repeat_per_seed_and_epoch():
    labels = [0] * 50 + [1] * 5 + [2] * 5 + [3] * 3  # imbalanced: one big class, three small
    batches = class_balanced_batches(labels, batch_size=8, classes_per_batch=4, seed=1, epoch=0)
    assert len(batches) == -(-len(labels) // 8)
    for batch in batches:
        per_class = Counter(labels[i] for i in batch)
        assert len(per_class) == 4 and min(per_class.values()) == 2  # every class in it has a positive pair
    seen = Counter(labels[i] for b in batches for i in b)
    assert max(seen.values()) == min(seen.values())  # classes come equally often, whatever their size
    assert batches == class_balanced_batches(labels, 8, 4, seed=1, epoch=0)  # what makes resume exact
    assert batches != class_balanced_batches(labels, 8, 4, seed=1, epoch=1)


def test_many_classes_cycle_through_all_of_them():
    labels = [c for c in range(77) for _ in range(8)]  # Banking77 at 8 shots
    batches = class_balanced_batches(labels, batch_size=16, classes_per_batch=8, seed=0, epoch=0)
    assert {labels[i] for b in batches for i in b} == set(range(77))


def test_pair_loss_is_zero_for_perfect_embeddings_and_pulls_pairs_otherwise():
    labels = torch.tensor([0, 0, 1, 1])
    perfect = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert pair_loss(perfect, labels).item() == pytest.approx(0.0)
    confused = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.2], [0.3, 1.0]]), dim=1)
    confused.requires_grad_(True)
    loss = pair_loss(confused, labels)
    loss.backward()
    assert loss.item() > 0.3 and confused.grad.abs().sum() > 0
    # Positives and negatives weigh the same however many of each a batch holds.
    many = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    only_positive_wrong = torch.eye(8)[[0, 1, 2, 3, 4, 5, 6, 7]]  # all orthogonal: negatives right, the positive wrong
    assert pair_loss(only_positive_wrong, many).item() == pytest.approx(0.5)


def test_label_descriptions_come_from_names_or_the_config():
    names = ["card_arrival", "0", "B-3", "lost-or-stolen card"]
    assert label_descriptions(names, FewShotConfig()) == {0: "card arrival", 3: "lost or stolen card"}
    given = FewShotConfig(label_descriptions={"0": "negative"})
    assert label_descriptions(names, given)[1] == "negative"
    with pytest.raises(ConfigError, match="labels the data does not have: \\['nope'\\]"):
        label_descriptions(names, FewShotConfig(label_descriptions={"nope": "x"}))


def fewshot_config(tiny_bert, small_csv, **train):
    config = tiny_config(tiny_bert, small_csv, **{"epochs": 4, "batch_size": 8, "learning_rate": 1e-3, **train})
    config["strategy"] = {"name": "fewshot"}
    config["data"]["examples_per_class"] = 6
    return config


def test_recommended_epochs_are_3_for_two_classes_6_for_more_and_at_least_6_steps():
    assert recommended_epochs(2, 8) == 3 and recommended_epochs(6, 24) == 6 and recommended_epochs(77, 39) == 6
    assert recommended_epochs(2, 1) == 6 and recommended_epochs(2, 3) == 3 and recommended_epochs(6, 1) == 6


def test_fewshot_trains_fits_a_head_saves_and_predicts_the_same(tiny_bert, small_csv, tmp_path):
    result = thrifty.train(fewshot_config(tiny_bert, small_csv), output=tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["sizes"]["train"] == 12 and report["fewshot"]["label_anchors"] == {"neg": "neg", "pos": "pos"}
    model_dir = tmp_path / "run" / "model"
    manifest = json.loads((model_dir / "thrifty.json").read_text())
    assert manifest["format"] == "sentence_embedding" and manifest["pooling"] == "mean"
    head = load_file(str(model_dir / "sentence_head.safetensors"))
    assert head["weight"].shape == (2, 32) and head["weight"].abs().sum() > 0  # fitted, not the zero init
    assert result.metrics["model"]["strategy"] == "fewshot"
    assert result.metrics["train"]["steps"] == 4 * 2  # 12 rows in batches of 8: 2 per epoch
    # The saved folder predicts what it evaluates: `evaluate` on a file agrees with `predict` on its texts.
    rows = [line.rsplit(",", 1) for line in small_csv.read_text().splitlines()[1:]]
    preds = thrifty.predict(tmp_path / "run", [text for text, _ in rows])
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in preds)
    agreed = sum(p["label"] == label for p, (_, label) in zip(preds, rows)) / len(rows)
    assert thrifty.evaluate(tmp_path / "run", str(small_csv))["accuracy"] == pytest.approx(agreed)
    assert agreed > 0.9  # an easy task: the fitted head separates it


# 4 epochs of 2 steps, a checkpoint every 3: pairs only; end to end in epochs 3-4, resumed before the switch (the
# head is fitted at the switch as in the uninterrupted run) and inside those epochs (the trained head is restored)
# The fast tier keeps the pairs-only case; the two end-to-end cases (about 30 s each) run in the full suite.
@pytest.mark.parametrize("end_to_end_epochs,kill_at,resumed_from", [
    (0, 5, 3), pytest.param(2, 5, 3, marks=pytest.mark.slow), pytest.param(2, 7, 6, marks=pytest.mark.slow)])
@pytest.mark.slow  # a real process killed and resumed: minutes of the fast tier, run in the full suite
def test_fewshot_resume_after_kill_9_matches_uninterrupted(tiny_bert, small_csv, tmp_path, end_to_end_epochs, kill_at,
                                                           resumed_from):
    config = fewshot_config(tiny_bert, small_csv, epochs=4, checkpoint_every_steps=3, eval_every_steps=4)
    config["strategy"]["fewshot"] = {"end_to_end_epochs": end_to_end_epochs}
    config["output"] = {"keep_checkpoints": True}
    path = write_config(tmp_path, config)
    whole = run_cli(["train", str(path), "--output", str(tmp_path / "whole"), "--no-progress"])
    assert whole.returncode == 0, whole.stderr
    crashed = run_cli(["train", str(path), "--output", str(tmp_path / "crash"), "--no-progress"],
                      env_extra={"THRIFTY_FAULT_AT_STEP": f"{kill_at}:KILL"})
    assert crashed.returncode == -9 and read_status(tmp_path / "crash")["status"] == "running"
    resumed = run_cli(["train", "--resume", str(tmp_path / "crash"), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {resumed_from}" in resumed.stdout
    assert losses(tmp_path / "crash") == pytest.approx(losses(tmp_path / "whole"), abs=1e-6)
    for name in ("model.safetensors", "sentence_head.safetensors"):
        a = load_file(str(tmp_path / "whole" / "model" / name))
        b = load_file(str(tmp_path / "crash" / "model" / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_end_to_end_epochs_train_the_head_on_cross_entropy_from_the_fitted_one(tiny_bert, small_csv, tmp_path):
    from transformers import AutoTokenizer

    from thrifty.models.sentence import SentenceClassifier
    from thrifty.tasks.base import Encoded
    from thrifty.tasks.fewshot import FewShotClassification

    config = fewshot_config(tiny_bert, small_csv, epochs=4)
    config["strategy"]["fewshot"] = {"end_to_end_epochs": 2}
    thrifty.train(config, output=tmp_path / "run", progress=False)
    model = SentenceClassifier.from_pretrained(tmp_path / "run" / "model", ["neg", "pos"], with_head=True)
    trained = model.head.weight.detach().clone()
    assert trained.abs().sum() > 0
    # The saved head is the trained one, not a refit on the final encoder (what pairs-only runs save)
    task = FewShotClassification(FewShotConfig())
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "run" / "model"))
    rows = [line.rsplit(",", 1) for line in small_csv.read_text().splitlines()[1:]]
    encoded = Encoded(input_ids=tokenizer([t for t, _ in rows])["input_ids"], targets=[int(l == "pos") for _, l in rows])
    task.before_evaluation(model, encoded, tokenizer.pad_token_id, 8, "cpu")
    assert not torch.allclose(model.head.weight, trained)
    assert thrifty.evaluate(tmp_path / "run", str(small_csv))["accuracy"] > 0.9


def test_automatic_end_to_end_epochs_are_half_of_the_epochs_from_2000_training_rows():
    assert automatic_end_to_end_epochs(4_848, 6) == 3 and automatic_end_to_end_epochs(1_999, 6) == 0
    assert automatic_end_to_end_epochs(10_000, 1) == 0  # a budget cut to one epoch keeps it for pairs


@pytest.mark.slow  # two whole runs; the rule itself is tested above
def test_end_to_end_epochs_are_automatic_in_a_run_and_reported(tiny_bert, small_csv, tmp_path, monkeypatch):
    thrifty.train(fewshot_config(tiny_bert, small_csv), output=tmp_path / "few", progress=False)
    report = json.loads((tmp_path / "few" / "data_report.json").read_text())["fewshot"]
    assert report["end_to_end_epochs"] == "automatic: 0, pairs only (12 training rows < 2,000)"

    monkeypatch.setattr(fewshot_task, "END_TO_END_MIN_ROWS", 12)  # the rule on a data set small enough for a test
    seen = []
    original = fewshot_task.FewShotClassification.start_epoch

    def spy(self, model, epoch, epochs, *args, **kwargs):
        original(self, model, epoch, epochs, *args, **kwargs)
        seen.append(self.end_to_end)

    monkeypatch.setattr(fewshot_task.FewShotClassification, "start_epoch", spy)
    thrifty.train(fewshot_config(tiny_bert, small_csv), output=tmp_path / "many", progress=False)
    report = json.loads((tmp_path / "many" / "data_report.json").read_text())["fewshot"]
    assert report["end_to_end_epochs"] == "automatic: half of train.epochs (12 training rows >= 12)"
    assert seen == [False, False, True, True]  # 4 epochs: 2 of pairs, then 2 end to end


def test_end_to_end_epochs_must_leave_epochs_of_pairs(tiny_bert, small_csv, tmp_path):
    config = fewshot_config(tiny_bert, small_csv, epochs=3)
    config["strategy"]["fewshot"] = {"end_to_end_epochs": 3}
    with pytest.raises(ConfigError, match="end_to_end_epochs=3 leaves no epoch of pairs in train.epochs=3"):
        thrifty.train(config, output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_class_with_one_example_is_refused_by_name(tiny_bert, small_csv, tmp_path):
    rows = small_csv.read_text().splitlines() + ["a lone example of a third class,odd"]
    small_csv.write_text("\n".join(rows) + "\n")
    config = fewshot_config(tiny_bert, small_csv)
    del config["data"]["examples_per_class"]
    config["data"]["validation"] = str(small_csv)  # keep the lone row in train
    config["data"]["leakage"] = "keep"
    with pytest.raises(DataError, match="class 'odd' has 1"):
        thrifty.train(config, output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_decoder_is_refused_with_the_models_that_work(tiny_llama, small_csv, tmp_path):
    config = fewshot_config(tiny_llama, small_csv)
    with pytest.raises(ModelError, match="needs a sentence encoder .* is a decoder"):
        thrifty.train(config, output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_fewshot_on_token_classification_is_refused():
    with pytest.raises(ConfigError, match="strategy fewshot learns one label per text"):
        thrifty.config.config_from_dict({"task": "token_classification", "strategy": {"name": "fewshot"}}).validate()


def test_most_confident_takes_the_surest_rows_of_each_predicted_class():
    import numpy as np

    from thrifty.tasks.fewshot import most_confident

    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.95, 0.05], [0.3, 0.7]])
    rows, labels = most_confident(probabilities, np.array([3, 5]), per_class=2)
    assert rows.tolist() == [4, 0, 2, 5] and labels == [3, 3, 5, 5]  # the class ids, not the columns
    rows, labels = most_confident(probabilities[:2], np.array([3, 5]), per_class=2)
    assert labels == [3, 3]  # no row predicted as 5: none taken for it


def test_self_training_reads_unlabelled_texts_and_drops_labelled_and_held_out_ones(tiny_bert, small_csv, tmp_path):
    validation = tmp_path / "validation.csv"
    validation.write_text("text,label\nan evening of pure joy,pos\na dull and tiresome evening,neg\n")
    unlabelled = tmp_path / "unlabelled.txt"
    fresh = [f"what a {w} movie, truly {w}" for w in ("splendid", "awful", "charming", "dreadful", "lovely")]
    labelled = [line.rsplit(",", 1)[0] for line in small_csv.read_text().splitlines()[1:]]
    unlabelled.write_text("\n".join(fresh + labelled[:30] + ["an evening of pure joy", "", fresh[0]]) + "\n")
    config = fewshot_config(tiny_bert, small_csv, epochs=2)
    config["data"].update(unlabelled=str(unlabelled), validation=str(validation), examples_per_class=None)
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    read = json.loads((tmp_path / "run" / "data_report.json").read_text())["fewshot"]["self_training"]
    assert read["pseudo_labels_per_class"] == 4 * 40  # automatic: 4x the median class's 40 labelled rows
    unl = read["unlabelled"]
    assert unl["dropped_labelled_in_train"] == 30 and unl["dropped_in_validation_or_test"] == 1
    assert unl["dropped_empty_text"] == 1 and unl["dropped_duplicates"] == 1 and unl["used"] == 5
    assert result.metrics["validation"]["examples"] == 2
    saved = yaml.safe_load((tmp_path / "run" / CONFIG_FILE).read_text())
    assert saved["data"]["unlabelled"] == str(unlabelled.resolve())  # absolute: --resume works from any folder


def test_self_training_changes_the_head_that_labelled_rows_alone_give(tiny_bert, small_csv, tmp_path):
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("".join(f"I {w} this film, thoroughly {i}\n" for i in range(20) for w in ("adored", "loathed")))
    heads = []
    for name, extra in (("plain", {}), ("self", {"unlabelled": str(unlabelled)})):
        config = fewshot_config(tiny_bert, small_csv, epochs=1)
        config["data"].update(extra)
        thrifty.train(config, output=tmp_path / name, progress=False)
        heads.append(load_file(str(tmp_path / name / "model" / "sentence_head.safetensors"))["weight"])
    assert not torch.allclose(heads[0], heads[1])  # the same encoder (same seed, same steps), another fit


def test_unlabelled_data_outside_fewshot_and_an_empty_unlabelled_file_are_refused(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv)
    config["data"]["unlabelled"] = str(small_csv)
    with pytest.raises(ConfigError, match="data.unlabelled feeds strategy fewshot's self-training"):
        thrifty.config.config_from_dict(config).validate()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    config = fewshot_config(tiny_bert, small_csv)
    config["data"]["unlabelled"] = str(empty)
    with pytest.raises(DataError, match="no text to learn from"):
        thrifty.train(config, output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_unlabelled_label_text_lines_keep_their_texts_when_the_data_is_label_text(tmp_path):
    from thrifty.config import DataConfig
    from thrifty.data.prepare import PreparedData, Split
    from thrifty.tasks.fewshot import unlabelled_texts

    pool = tmp_path / "pool.txt"
    pool.write_text("1 a warm and witty film\n0 a cold and tedious film\n1 labelled already\n")
    data = PreparedData(Split(["labelled already"], [1]), Split(["held out"], [0]), None, ["0", "1"], {})
    texts, read = unlabelled_texts(DataConfig(unlabelled=str(pool), format="label_text"), data, seed=0, limit=10)
    assert texts == ["a warm and witty film", "a cold and tedious film"] and read["dropped_labelled_in_train"] == 1
    texts, _ = unlabelled_texts(DataConfig(unlabelled=str(pool)), data, seed=0, limit=1)
    assert len(texts) == 1 and texts[0][:2] in ("1 ", "0 ")  # plain lines otherwise, sampled down to the limit
