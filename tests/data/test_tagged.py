"""Word-tagged data: CoNLL and JSONL readers, BIO repair, and one clear line for each bad input."""

import json

import pytest

from thrifty.cli import main
from thrifty.config import DataConfig
from thrifty.data.tagged import prepare_tagged, read_tagged, repair_bio
from thrifty.errors import DataError

from tests.conftest import shared_file


def test_conll_reader_skips_docstart_and_reads_the_last_column(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    words, tags, counts = read_tagged(str(path), "train", DataConfig())
    assert words == [["EU", "rejects"], ["Peter"]] and tags == [["B-ORG", "O"], ["B-PER"]]
    assert counts["docstart_lines_skipped"] == 1


def test_wnut_style_tab_lines_and_tab_only_separators():
    path = shared_file("wnut17", "wnut17train.conll")
    words, tags, _ = read_tagged(str(path), "train", DataConfig())
    assert len(words) == 3394  # SOURCE.md: 3,394 sentences
    assert sum(len(w) for w in words) == 62730


def test_bio_repair_counts_and_refusal(tmp_path):
    assert repair_bio(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC"]) == (["O", "B-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC"], 2)
    path = tmp_path / "iob1.txt"
    path.write_text("Peter I-PER\nlives O\n\nParis I-LOC\n\nAnna B-PER\n")
    data = prepare_tagged(DataConfig(train=str(path), validation=str(path)), seed=1)
    assert data.report["splits"]["train"]["tags_repaired_i_to_b"] == 2
    with pytest.raises(DataError, match="invalid_tags repair"):
        prepare_tagged(DataConfig(train=str(path), invalid_tags="error"), seed=1)


def test_jsonl_input(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"tokens": ["Anna", "sings"], "tags": ["B-PER", "O"]}) + "\n"
                    + json.dumps({"tokens": ["Bo"], "tags": ["B-PER"]}) + "\n")
    data = prepare_tagged(DataConfig(train=str(path), validation=str(path)), seed=1)
    assert data.label_names == ["O", "B-PER", "I-PER"] and len(data.train) == 2  # I-PER: complete_bio
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match="same length"):
        read_tagged(str(bad), "train", DataConfig())


def run_exit_2(capsys, tmp_path, *args):
    code = main(["train", *args, "--output", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("thrifty: error: ")
    assert not (tmp_path / "run").exists()  # nothing left behind
    return err[0]


def test_ragged_conll_line_is_named(tmp_path, capsys):
    path = tmp_path / "ragged.txt"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ O\n")
    line = run_exit_2(capsys, tmp_path, "--task", "token_classification", "--data.train", str(path))
    assert "line 2" in line and "3 columns" in line


def test_unseen_tags_in_evaluation_files_are_refused(tmp_path, capsys):
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    train.write_text("Anna B-PER\nsings O\n\nBo B-PER\n")
    dev.write_text("Acme B-ORG\nsells O\n")
    line = run_exit_2(capsys, tmp_path, "--task", "token_classification", "--data.train", str(train),
                      "--data.validation", str(dev))
    assert "never seen in training" in line and "B-ORG" in line


def test_a_type_seen_only_in_one_word_entities_still_has_its_inside_tag(tmp_path):
    """200 sentences may hold PER only as one-word names: a two-word name in validation is PER, not an unseen tag."""
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    train.write_text("Anna B-PER\nsings O\n\nBo B-PER\nruns O\n")
    dev.write_text("Anna B-PER\nKarenina I-PER\nreads O\n")
    data = prepare_tagged(DataConfig(train=str(train), validation=str(dev)), seed=0)
    assert data.label_names == ["O", "B-PER", "I-PER"]
    assert data.validation.tags == [[1, 2, 0]]
    # given labels still say which tags exist: only tags seen in training must be among them
    given = prepare_tagged(DataConfig(train=str(train), validation=str(tmp_path / "train.txt"), labels=["O", "B-PER"]),
                           seed=0)
    assert given.label_names == ["O", "B-PER"]


def test_task_and_format_mismatches_name_the_fix(tmp_path, capsys, small_csv):
    line = run_exit_2(capsys, tmp_path, "--task", "token_classification", "--data.train", str(small_csv))
    assert "sentence table" in line and "task: classification" in line
    conll = tmp_path / "ner.txt"
    conll.write_text("".join("Anna B-PER\nsings O\nin O\nParis B-LOC\n\n" for _ in range(30)))
    line = run_exit_2(capsys, tmp_path, "--data.train", str(conll))
    assert "CoNLL" in line and "task: token_classification" in line
