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
    with pytest.raises(DataError, match=r"column 'text' not found .* \(columns: review, stars\); set --data.text_column"):
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
