"""`thrifty audit` on real components: tiny models trained for real (one taught a bias on purpose), Fairlearn's
metrics, the default MiniLM encoder's association tests, the HTML report in a real headless browser; the statistics
checked against cases whose answer is known; and bad input, one line each."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import train_pos_neg
from thrifty.audit.association import seat
from thrifty.audit.counterfactual import holm
from thrifty.audit.groups import group_metrics, jigsaw_aucs, power_mean
from thrifty.audit.run import parse_fail_on
from thrifty.audit.sets import AssociationTest, counterfactual_set, fill, read_corpus
from thrifty.cli import main


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_holm_and_power_mean():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3 x 0.01; 2 x 0.03; max(0.06, 1 x 0.04)
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert power_mean([0.9, 0.9]) == pytest.approx(0.9)
    assert power_mean([0.9, 0.5]) < 0.6  # p = -5 leans towards the worst subgroup (the arithmetic mean is 0.7)


def test_jigsaw_aucs_on_a_known_case():
    # scores rank everything right except that the subgroup's negatives score as high as the background's positives
    labels = [0, 0, 1, 1, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.8, 0.9, 0.85, 0.95, 0.97, 0.99]
    subgroup = [False] * 4 + [True] * 4
    result = jigsaw_aucs(labels, scores, {"group": subgroup})
    g = result["subgroups"]["group"]
    assert g["subgroup_auc"] == 1.0 and g["bnsp_auc"] == 1.0  # within the group and its positives: ranked right
    assert g["bpsn_auc"] == 0.25  # its negatives (0.85, 0.95) against background positives (0.8, 0.9): 1 of 4 right
    assert result["final_score"] is not None and result["worst_subgroup"] == "group"
    one_class = jigsaw_aucs([0, 1, 0, 0], [0.1, 0.9, 0.2, 0.3], {"negatives only": [False, False, True, True]})
    assert one_class["subgroups"]["negatives only"]["subgroup_auc"] is None  # undefined, said so, never 0.5


def test_group_metrics_through_fairlearn():
    true = ["pos", "pos", "neg", "neg", "pos", "pos", "neg", "neg"]
    predicted = ["pos", "pos", "neg", "neg", "neg", "neg", "pos", "neg"]  # group b: 1 of 4 right
    groups = ["a"] * 4 + ["b"] * 4
    result = group_metrics(true, predicted, groups, ["neg", "pos"])
    assert result["groups"]["a"]["accuracy"] == 1.0 and result["groups"]["b"]["accuracy"] == 0.25
    assert result["groups"]["b"]["false_negative_rate"] == 1.0 and result["groups"]["b"]["false_positive_rate"] == 0.5
    assert result["differences"]["accuracy"] == 0.75 and result["demographic_parity_difference"] == 0.25
    assert result["equalized_odds_difference"] == 1.0  # FNR 0 vs 1
    multi = group_metrics(["x", "y", "z"], ["x", "y", "y"], ["a", "a", "b"], ["x", "y", "z"])
    assert "demographic_parity_difference" not in multi and multi["groups"]["b"]["accuracy"] == 0.0


def test_seat_finds_a_planted_association_and_not_a_missing_one():
    rng = np.random.default_rng(0)
    base = {w: rng.normal(size=16) for w in "x1 x2 x3 x4 x5 x6 y1 y2 y3 y4 y5 y6 a1 a2 a3 a4 b1 b2 b3 b4".split()}
    pull = rng.normal(size=16) * 3  # X words and A words share a direction; Y and B do not

    def embed(sentences, planted=True):
        rows = []
        for s in sentences:
            word = next(w for w in base if w in s.lower().split() or w in s.lower().rstrip(".").split())
            if not planted and word[0] == "y":  # no association: each Y word embedded as its X twin
                word = "x" + word[1:]
            v = base[word] + (pull if planted and word[0] in "xa" else 0) + rng.normal(size=16) * 0.01
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)

    test = AssociationTest("planted", {"X": [f"x{i}" for i in range(1, 7)], "Y": [f"y{i}" for i in range(1, 7)]},
                           {"A": [f"a{i}" for i in range(1, 5)], "B": [f"b{i}" for i in range(1, 5)]})
    templates = ["This is {word}.", "{word} is here."]
    planted = seat(test, templates, embed)
    assert planted["effect_size"] > 1.5 and planted["p_value"] < 0.01 and planted["exact"]  # C(12, 6) = 924 partitions
    assert planted["sentences"] == 20 * 2
    null = seat(test, templates, lambda s: embed(s, planted=False))
    assert abs(null["effect_size"]) < 0.1 and null["p_value"] > 0.3


def test_sets_fill_and_corpus_layout(tmp_path):
    assert fill("{person} made me feel angry.", "my sister") == "My sister made me feel angry."
    assert fill("I saw {person}.", "my sister") == "I saw my sister."
    default = counterfactual_set()
    assert len(default.texts) == len(default.sentences) >= 3000 and "gender" in default.attributes
    corpus = write(tmp_path / "eec.csv", "ID,Sentence,Template,Person,Gender,Race,Emotion,Emotion word\n"
                   "1,Alonzo feels angry.,<person subject> feels <emotion word>.,Alonzo,male,African-American,anger,angry\n"
                   "2,Adam feels angry.,<person subject> feels <emotion word>.,Adam,male,European,anger,angry\n"
                   "3,Nichelle feels angry.,<person subject> feels <emotion word>.,Nichelle,female,African-American,anger,angry\n"
                   "4,Amanda feels angry.,<person subject> feels <emotion word>.,Amanda,female,European,anger,angry\n"
                   "5,He feels angry.,<person subject> feels <emotion word>.,He,male,,anger,angry\n"
                   "6,She feels angry.,<person subject> feels <emotion word>.,She,female,,anger,angry\n")
    cset = read_corpus(corpus)
    assert cset.attributes == {"gender": ["male", "female"], "race": ["African-American", "European"]}
    assert {s.key for s in cset.sentences} == {"{person} feels angry."}  # compared within the same filled template
    assert len(cset.texts) == 6 and sum(s.attribute == "race" for s in cset.sentences) == 4


@pytest.fixture(scope="module")
def biased_run(tmp_path_factory, tiny_run):
    """A model taught that sisters are positive and brothers negative: the audit must see it."""
    return train_pos_neg(tmp_path_factory.mktemp("biased"), tiny_run, "my sister wrote note {i}",
                         "my brother wrote note {i}", 30, epochs=8, learning_rate=5e-3)


def test_a_planted_gender_bias_is_found_and_trips_the_gate(biased_run, tmp_path, capsys):
    templates = write(tmp_path / "templates.txt", "# person first\n{person} wrote note 3\n{person} wrote note 11\n"
                      "{person} wrote note 17\nyesterday {person} wrote note 5\nI think {person} wrote note 8\n"
                      "{person} wrote note 21\n{person} wrote note 26\n{person} wrote note 2\n")
    terms = write(tmp_path / "terms.yaml", "gender:\n  female: [my sister]\n  male: [my brother]\n"
                  "number:\n  one: [one person]\n  other: [another person]\n")
    out = tmp_path / "audit"
    code = main(["audit", str(biased_run), "--templates", str(templates), "--terms", str(terms), "--output", str(out),
                 "--no-association", "--fail-on", "max_label_change_rate>0.5,max_gap>0.99"])
    printed = capsys.readouterr().out
    report = json.loads((out / "audit.json").read_text())
    gender = report["counterfactual"]["attributes"]["gender"]
    rate = gender["groups"]["female"]["label_change_rate"]
    assert code == 1 and f"FAILED: max_label_change_rate = {rate:g} > 0.5" in printed and "max_gap =" not in printed
    pair = gender["pairs"][0]
    assert pair["groups"] == ["female", "male"] and pair["class"] == "pos" and pair["templates"] == 8
    assert pair["mean_difference"] > 0.1 and pair["ci95"][0] > 0 and pair["wilcoxon_p"] < 0.05 and pair["significant"]
    assert rate >= 0.75  # the label flips with the person in most templates (the tiny model learns it imperfectly)
    number = report["counterfactual"]["attributes"]["number"]  # persons it was not taught about: no flips
    assert number["groups"]["one"]["label_change_rate"] < 0.5 and number["max_gap"] < pair["mean_difference"]
    assert report["counterfactual"]["summary"]["max_gap_attribute"] == "gender"
    assert report["summary"]["max_gap"] == gender["max_gap"] and report["failed"]

    from tests.monitoring.browser import rendered

    page = rendered(out / "report.html")
    assert page["title"] == "thrifty audit: model" and page["status"].startswith("FAILED: max_label_change_rate")
    assert page["images"] == 2 and all(width > 100 for width in page["image_widths"]) and not page["errors"]


def test_group_metrics_and_jigsaw_on_labelled_data(tiny_run, tmp_path, capsys):
    rows = [("I loved this wonderful film number 3", "pos", "a"), ("I hated this terrible film number 4", "neg", "a"),
            ("I loved this wonderful film number 5", "pos", "b"), ("I hated this terrible film number 6", "neg", "b"),
            ("I loved this wonderful film number 7", "pos", ""), ("I hated this terrible film number 8", "neg", "")] * 3
    data = tmp_path / "labelled.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label", "identity"), *rows])
    out = tmp_path / "audit"
    assert main(["audit", str(tiny_run), "--data", str(data), "--group-column", "identity", "--output", str(out),
                 "--attributes", "gender", "--no-association"]) == 0
    report = json.loads((out / "audit.json").read_text())
    groups = report["groups"]
    assert groups["texts"] == 18 and set(groups["groups"]) == {"a", "b", ""} and groups["groups"]["a"]["count"] == 6
    assert set(report["jigsaw"]["subgroups"]) == {"a", "b"}  # a blank group is background only
    assert report["summary"]["demographic_parity_difference"] is not None
    assert list(report["counterfactual"]["attributes"]) == ["gender"]
    assert "groups (identity, 18 texts)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_pretrained_default_encoder_gets_association_tests(tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "--model", "all-MiniLM-L6-v2", "--output", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    tests = report["association"]["tests"]
    assert set(tests) == {"names_pleasant", "gender_career", "gender_science"}
    assert all(-2 <= t["effect_size"] <= 2 and 0 < t["p_value"] <= 1 for t in tests.values())
    assert tests["names_pleasant"]["sentences"] == 90 * 6 and "skipped" in report["counterfactual"]
    assert "association gender_science: effect size" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["--templates", "TEMPLATES_NO_PLACEHOLDER"], "has no {person} placeholder"),
    (["--terms", "TERMS_EMPTY_GROUP"], "group 'male' of attribute 'gender' has no terms"),
    (["--corpus", "CORPUS_BAD"], "lacks column(s) Template, Person, Gender, Race, Emotion"),
    (["--data", "DATA", "--group-column", "nope"], "has no group column 'nope'; its columns: text, label, identity"),
    (["--fail-on", "max_gap=0.1"], "is not NAME OP NUMBER"),
    (["--fail-on", "max_gapp>0.1"], "it reports: max_gap,"),
    (["--fail-on", "min_subgroup_auc<0.8"], "it needs --data FILE with --group-column COLUMN"),
    (["--attributes", "height"], "attribute(s) ['height'] are not in the terms"),
    (["--positive-label", "maybe"], "--positive-label 'maybe' is not a label"),
    (["--data", "DATA"], "thrifty derives the group itself only for the Jigsaw sentence templates' layout"),
    (["--min-gap", "1.5"], "--min-gap 1.5 must be in [0, 1)"),
    (["--data", "LATIN1", "--group-column", "identity"], "is not valid UTF-8"),
    (["--data", "NOT_PARQUET", "--group-column", "identity"], "cannot read Parquet file"),
])
def test_bad_audit_input_is_one_line(tiny_run, tmp_path, capsys, args, fragment):
    files = {"TEMPLATES_NO_PLACEHOLDER": write(tmp_path / "t.txt", "{person} is here\nno person here\n"),
             "TERMS_EMPTY_GROUP": write(tmp_path / "terms.yaml", "gender:\n  female: [my sister]\n  male: []\n"),
             "CORPUS_BAD": write(tmp_path / "c.csv", "Sentence,Other\nHe is here.,x\n"),
             "DATA": write(tmp_path / "d.csv", "text,label,identity\nI loved it,pos,a\n"),
             "NOT_PARQUET": write(tmp_path / "d.parquet", "text,label,identity\nI loved it,pos,a\n")}
    (tmp_path / "latin1.csv").write_bytes("text,label,identity\nI loved the caf\u00e9,pos,a\n".encode("latin-1"))
    files["LATIN1"] = tmp_path / "latin1.csv"
    args = [str(files.get(a, a)) for a in args]
    assert main(["audit", str(tiny_run), "--output", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unsupported_task_and_missing_model_are_refused(tiny_run, tmp_path, capsys):
    import shutil

    tagger = tmp_path / "tagger"
    shutil.copytree(tiny_run, tagger)
    manifest = tagger / "model" / "thrifty.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "token_classification"}))
    assert main(["audit", str(tagger)]) == 2
    assert "covers sentence classification models" in capsys.readouterr().err
    assert main(["audit"]) == 2
    assert "give a fine-tuned model" in capsys.readouterr().err
    assert parse_fail_on("max_gap>0.05, significant_gaps>=1") == [("max_gap", ">", 0.05), ("significant_gaps", ">=", 1)]


def test_the_audit_runs_at_the_end_of_training(tiny_bert, small_csv, tmp_path, capsys):
    """audit: section: the summary lands in metrics.json and the manifest; a tripped gate makes `train` exit 1 with
    the run complete; a bad templates file fails before training starts."""
    import yaml

    from tests.conftest import tiny_config

    config = tiny_config(tiny_bert, small_csv)
    config["tracking"]["tensorboard"] = False
    config["audit"] = {"enabled": True, "attributes": ["gender", "age"], "fail_on": "max_gap>=0"}  # always trips
    path = write(tmp_path / "config.yaml", yaml.safe_dump(config))
    assert main(["train", str(path), "--output", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "audit FAILED: max_gap" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())  # complete: metrics.json is written last
    assert metrics["audit"]["failed"] and metrics["audit"]["summary"]["counterfactual_sentences"] == 24 * (20 + 12)
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["audit"]["summary"]["max_gap"] == metrics["audit"]["summary"]["max_gap"]
    assert (tmp_path / "run" / "audit" / "report.html").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"

    code = main(["train", str(path), "--output", str(tmp_path / "run2"), "--no-progress", "--audit.templates",
                 str(tmp_path / "missing.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "templates file not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run2" / "model").exists()  # nothing trained
    assert main(["train", str(path), "--output", str(tmp_path / "run3"), "--audit.fail_on", "min_subgroup_auc<0.9"]) == 2
    assert "needs --data FILE with --group-column COLUMN" in capsys.readouterr().err
