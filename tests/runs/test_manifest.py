"""A model folder stands alone: its manifest carries what prediction needs; warm starts check where they start from."""

import json
import shutil

import pytest

import thrifty
from thrifty.cli import main
from thrifty.runs.manifest import MANIFEST_VERSION
from thrifty.runs.run_dir import set_status

from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, tiny_bert):
    folder = tmp_path_factory.mktemp("cls")
    rows = ["text,label"] + [f"I loved this wonderful film number {i},pos" for i in range(40)] + \
        [f"I hated this terrible film number {i},neg" for i in range(40)]
    (folder / "small.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(tiny_bert, folder / "small.csv", epochs=1)
    config["data"]["lowercase"] = True
    return thrifty.train(config, output=folder / "run", progress=False)


def test_manifest_records_lineage_and_preprocessing(classifier_run, tiny_bert):
    manifest = json.loads((classifier_run.run_dir / "model" / "thrifty.json").read_text())
    assert manifest["manifest_version"] == MANIFEST_VERSION and manifest["thrifty_version"] == thrifty.__version__
    assert manifest["task"] == "classification" and manifest["labels"] == ["neg", "pos"]
    assert manifest["preprocessing"]["lowercase"] is True and manifest["preprocessing"]["max_length"] > 0
    assert len(manifest["base_model"]["weights_sha256"]) == 64 and manifest["parent"] is None
    assert len(manifest["data"]["fingerprint"]) == 64 and manifest["data"]["train_examples"] == 60
    assert manifest["metrics"]["validation"]["accuracy"] == classifier_run.metrics["validation"]["accuracy"]


def test_a_copied_model_folder_works_after_the_run_is_deleted(classifier_run, tmp_path, capsys):
    copy = tmp_path / "shipped"
    shutil.copytree(classifier_run.run_dir / "model", copy)
    expected = thrifty.predict(classifier_run.run_dir, ["I LOVED this wonderful film"])
    run_copy = tmp_path / "run-copy"  # delete a run folder (a copy of it, so the shared fixture stays)
    shutil.copytree(classifier_run.run_dir, run_copy)
    shutil.rmtree(run_copy)
    assert thrifty.predict(copy, ["I LOVED this wonderful film"]) == expected  # lowercasing came from the manifest
    data = tmp_path / "eval.csv"
    data.write_text("text,label\nI loved it,pos\nI hated it,neg\n")
    assert main(["evaluate", str(copy), "--data", str(data)]) == 0
    assert (copy / "evaluations" / "eval.csv" / "metrics.json").exists()


def exit_2(capsys, args) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_newer_or_other_task_manifests_are_refused(classifier_run, tmp_path, capsys, small_csv):
    newer = tmp_path / "newer"
    shutil.copytree(classifier_run.run_dir / "model", newer)
    manifest = json.loads((newer / "thrifty.json").read_text())
    manifest.update(manifest_version=MANIFEST_VERSION + 1, thrifty_version="9.0.0")
    (newer / "thrifty.json").write_text(json.dumps(manifest))
    assert "upgrade thrifty" in exit_2(capsys, ["predict", str(newer), "--text", "hi"])
    conll = tmp_path / "ner.txt"
    conll.write_text("Anna B-PER\nsings O\n\nBo B-PER\n")
    line = exit_2(capsys, ["train", "--task", "token_classification", "--model.name", str(classifier_run.run_dir),
                           "--data.train", str(conll), "--output", str(tmp_path / "x")])
    assert "is a classification model and this is a token_classification run" in line
    assert not (tmp_path / "x").exists()


def test_warm_start_from_an_unfinished_run_is_refused(classifier_run, tmp_path, capsys, small_csv):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(classifier_run.run_dir, unfinished)
    set_status(unfinished, "interrupted")
    line = exit_2(capsys, ["train", "--model.name", str(unfinished), "--data.train", str(small_csv),
                           "--output", str(tmp_path / "y")])
    assert "not a finished thrifty run" in line and "--resume" in line
    assert not (tmp_path / "y").exists()


def test_warm_start_with_the_same_labels_keeps_the_head(classifier_run, tiny_bert, tmp_path, small_csv):
    config = tiny_config(tiny_bert, small_csv, max_steps=1, learning_rate=1e-9)
    config["model"]["name"] = str(classifier_run.run_dir)
    warm = thrifty.train(config, output=tmp_path / "warm", progress=False)
    # A (practically) untrained continuation scores like its parent: the head and body were kept.
    assert warm.metrics["validation"]["accuracy"] >= classifier_run.metrics["validation"]["accuracy"] - 0.1
    manifest = json.loads((warm.run_dir / "model" / "thrifty.json").read_text())
    assert manifest["parent"]["run"] == str(classifier_run.run_dir.resolve())
    assert manifest["base_model"]["name"] == str(tiny_bert)
