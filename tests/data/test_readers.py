"""Readers: every supported format, and clear errors for files that cannot be read."""

import json

import pandas as pd
import pytest

from thrifty.data.readers import read_table
from thrifty.errors import DataError

from tests.conftest import shared_file


def test_csv_tsv_jsonl_parquet_agree(tmp_path):
    frame = pd.DataFrame({"sentence": ["good, really good", "bad \"quoted\" one", "fine"], "y": [1, 0, 1]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "d.tsv").write_text("sentence\ty\ngood, really good\t1\nbad \"quoted\" one\t0\nfine\t1\n")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.parquet"):
        table = read_table(str(tmp_path / name), text_column="sentence", label_column="y")
        assert table.texts == ["good, really good", 'bad "quoted" one', "fine"], name
        assert table.labels == ["1", "0", "1"], name  # integer labels become their decimal text everywhere


def test_label_text_lines_like_sst2():
    table = read_table(str(shared_file("sst2", "stsa.binary.dev")))
    assert len(table.texts) == 872
    assert set(table.labels) == {"0", "1"}
    assert not table.texts[0].startswith(("0 ", "1 "))


def test_banking77_csv_with_quoted_commas():
    table = read_table(str(shared_file("banking77", "train.csv")), label_column="category")
    assert len(table.texts) == 10003
    assert len(set(table.labels)) == 77


def test_non_utf8_reports_line_numbers(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nok,a\ncaf\xe9,b\nfine,a\nna\xefve,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8 \(2 bad line\(s\): 3, 5\).*encoding_errors replace"):
        read_table(str(path))
    table = read_table(str(path), encoding_errors="replace")
    assert table.texts[1] == "caf\ufffd" and table.notes["lines_with_replaced_bytes"] == 2


def test_missing_column_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars\nnice,5\n")
    with pytest.raises(DataError, match=r"column 'text' not found .* \(columns: review, stars; split by ',', sniffed\); "
                                        r"set --data.text_column"):
        read_table(str(path))


@pytest.mark.parametrize("content,match", [(None, "not found"), ("", "is empty"), ("text,label\n", "has no rows")])
def test_missing_empty_and_headerless_files(tmp_path, content, match):
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        read_table(str(path))


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_table(str(tmp_path))


def test_invalid_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2"):
        read_table(str(path))


def test_plain_lines_keep_every_line_in_order(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("first\n\nthird line\n")
    table = read_table(str(path), label_column=None, plain_lines=True)
    assert table.texts == ["first", "", "third line"] and table.labels is None


def test_a_header_with_another_delimiter_is_read_as_columns(tmp_path):
    from thrifty.errors import DataError

    path = tmp_path / "emotion.txt"  # like ../shared/data/emotion: `text;label_name`, no CSV suffix
    path.write_text("text;label_name\ni feel great today;joy\ni am so sad;sadness\n")
    table = read_table(str(path), text_column="text", label_column="label_name")
    assert table.texts == ["i feel great today", "i am so sad"] and table.labels == ["joy", "sadness"]
    with pytest.raises(DataError, match="--data.label_column label_name"):
        read_table(str(path))  # the default label column is not in the header: say which one is


def test_words_guessed_as_labels_are_refused(tmp_path):
    from thrifty.errors import DataError

    rows = [f"{w} feel {w} something number {i}" for i, w in enumerate(["i", "im", "ive", "you", "we"] * 8)]
    rows += [f"word{i} is a text about word{i - 1}" for i in range(1, 40)]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="look like words"):
        read_table(str(path))


def test_column_settings_on_label_text_lines_are_not_ignored(tmp_path):
    from thrifty.errors import DataError

    path = tmp_path / "sst.txt"
    path.write_text("1 a fine film\n0 a dull film\n")
    with pytest.raises(DataError, match="cannot apply"):
        read_table(str(path), label_column="sentiment")


SEMICOLON = "text;label\nhello, world;pos\na film, badly made;neg\ngreat;pos\nawful, just awful;neg\n"


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
def test_the_delimiter_is_sniffed_whatever_the_suffix(tmp_path, delimiter):
    rows = [("text", "label"), ("hello, world; again", "pos"), ("a film | badly made", "neg"), ("great", "pos")]
    for name in ("d.csv", "d.tsv"):
        path = tmp_path / name
        quote = (lambda v: f'"{v}"' if delimiter in v else v) if delimiter != "\t" else (lambda v: v)
        path.write_text("".join(delimiter.join(quote(v) for v in row) + "\n" for row in rows))
        table = read_table(str(path))
        assert table.texts == ["hello, world; again", "a film | badly made", "great"], (name, delimiter)
        assert table.labels == ["pos", "neg", "pos"] and table.delimiter == delimiter
        assert table.delimiter_chosen == "sniffed"


def test_a_semicolon_csv_is_read_and_a_wrong_given_delimiter_is_named_with_the_fix(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text(SEMICOLON)
    table = read_table(str(path))
    assert table.texts[0] == "hello, world" and table.labels == ["pos", "neg", "pos", "neg"]
    assert table.delimiter_text() == "';' (sniffed)"
    with pytest.raises(DataError, match=r"\(columns: text;label; split by ',', given\); its header line looks "
                                        r"';'-separated: set --data.delimiter ';'"):
        read_table(str(path), delimiter=",")
    assert read_table(str(path), delimiter=";").delimiter_chosen == "given"
    pipes = tmp_path / "pipes.csv"
    pipes.write_text("text|label\na, b; c|pos\nd|neg\n")
    assert read_table(str(pipes), delimiter="|").texts == ["a, b; c", "d"]
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("text\tlabel\na, b\tpos\n")
    assert read_table(str(tabs), delimiter="tab").texts == ["a, b"]


def test_a_comma_csv_reads_as_before_even_with_other_delimiters_in_its_texts(tmp_path):
    path = tmp_path / "d.csv"  # semicolons and pipes in every text: the header, split by commas, names the columns
    path.write_text("text,label\n" + "".join(f'"a; b; c | {i}; x",pos\n' for i in range(20)))
    table = read_table(str(path))
    assert table.delimiter == "," and table.texts[0] == "a; b; c | 0; x"


def test_every_labelled_table_command_reads_through_read_table(tmp_path):
    """evaluate, retrain and monitor --reference (labelled_split: the classification task's read_labelled), audit
    --data (read_labelled_groups), predict and training (prepare_data): one reader, so a semicolon file reads alike
    everywhere."""
    import inspect

    from thrifty.audit import run as audit_run
    from thrifty.data import prepare
    from thrifty.inference import predictor
    from thrifty.tasks.classification import SequenceClassification

    assert "labelled_split(" in inspect.getsource(predictor.labelled_texts)
    assert "read_labelled(" in inspect.getsource(predictor.labelled_split)
    for function in (prepare.prepare_data, SequenceClassification.read_labelled, audit_run.read_labelled_groups):
        assert "read_table(" in inspect.getsource(function), function
    path = tmp_path / "groups.csv"
    path.write_text("text;label;identity\nhello, world;pos;a\nbad;neg;b\n;neg;a\n")
    texts, labels, groups, dropped = audit_run.read_labelled_groups(str(path), "text", "label", "identity")
    assert texts == ["hello, world", "bad"] and labels == ["pos", "neg"] and groups == ["a", "b"] and dropped == 1


def test_the_data_report_and_its_console_lines_name_the_delimiter(tmp_path):
    from thrifty.config import DataConfig
    from thrifty.data.prepare import format_report, prepare_data

    train, validation = tmp_path / "train.csv", tmp_path / "val.tsv"
    train.write_text("text;label\n" + "".join(f"text number {i}, with a comma;{'ab'[i % 2]}\n" for i in range(20)))
    validation.write_text("text\tlabel\n" + "".join(f"held out {i}\t{'ab'[i % 2]}\n" for i in range(6)))
    report = prepare_data(DataConfig(train=str(train), validation=str(validation)), seed=0).report
    assert report["delimiters"] == {"train": {"delimiter": ";", "chosen": "sniffed"},
                                    "validation": {"delimiter": "\t", "chosen": "sniffed"}}
    lines = format_report(report)
    assert "columns split by ';' (sniffed): train" in lines and "columns split by tab (sniffed): validation" in lines
