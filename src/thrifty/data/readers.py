"""Read labelled (or unlabelled) text from CSV, TSV, JSONL, Parquet and `label text` line files.

Every reader returns plain Python lists of strings: texts, and labels as strings (integer labels are kept as
their decimal text, so ``0``/``1`` files and ``neg``/``pos`` files behave alike). Undecodable bytes are a
hard error naming the line numbers unless the user chose ``encoding_errors: replace``; nothing is skipped
without being counted.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Optional

from thrifty.config import BUILTIN_DATA
from thrifty.errors import DataError

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class Table:
    """Rows read from one file, before any cleaning."""

    source: str
    texts: list[str]
    labels: Optional[list[Optional[str]]]  # None when the file has no labels (prediction input)
    notes: dict[str, int] = field(default_factory=dict)  # e.g. lines with replaced bytes


def resolve_data_path(path: str) -> Path:
    """Map the built-in sample name to its bundled file; leave other paths alone."""
    if path == BUILTIN_DATA:
        return Path(str(resources.files("thrifty.resources").joinpath("banking77_sample.csv")))
    return Path(path).expanduser()


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return FORMATS_BY_SUFFIX.get(path.suffix.lower(), "label_text")


def check_file(path: Path, role: str) -> None:
    if not path.exists():
        raise DataError(f"{role} file not found: {path}; check the path in data.{role} (relative paths start at the current folder)")
    if path.is_dir():
        raise DataError(f"{role} path is a folder, not a file: {path}; point data.{role} at a data file")
    if path.stat().st_size == 0:
        raise DataError(f"{role} file is empty: {path}; it needs at least a few labelled rows")


def read_bytes(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {role} file {path}: {exc.strerror or exc}; check its permissions") from None


def decode(raw: bytes, source: str, errors: str) -> tuple[str, int]:
    """UTF-8 (with or without BOM). Returns the text and the number of lines that had bad bytes."""
    try:
        return raw.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        pass
    bad_lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(number)
    if errors == "replace":
        return raw.decode("utf-8-sig", errors="replace"), len(bad_lines)
    shown = ", ".join(str(n) for n in bad_lines[:5]) + (" ..." if len(bad_lines) > 5 else "")
    raise DataError(
        f"{source} is not valid UTF-8 ({len(bad_lines)} bad line(s): {shown}); "
        "re-save it as UTF-8 or set --data.encoding_errors replace"
    )


def _column(frame, name: str, source: str, option: str) -> list:
    if name not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns)
        raise DataError(f"column '{name}' not found in {source} (columns: {columns}); set --data.{option} to the right column")
    return frame[name].tolist()


def _clean_cell(value) -> Optional[str]:
    """pandas gives NaN/None for missing cells; labels may arrive as ints or floats from Parquet/JSON."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def json_lines(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a JSONL text; a bad line is named."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON in {source} at line {number}: {exc.msg}; each line must be one JSON object") from None


DELIMITERS = (",", ";", "|", "\t")  # what a header line may be split by


def sniff_header(text: str, source: str, text_column: str, label_column: Optional[str]) -> Optional[str]:
    """The delimiter of a first line that names the text column (and the label column) as a header; None when the
    first line is no such header. A header naming the text column but not the configured label column is refused
    with the columns it does name: a silent 'label text' guess would train on the first words of the texts."""
    first = text.split("\n", 1)[0].strip()
    for delimiter in DELIMITERS:
        fields = [f.strip().strip('"') for f in first.split(delimiter)]
        if len(fields) < 2 or text_column not in fields:
            continue
        if label_column is None or label_column in fields:
            return delimiter
        others = [f for f in fields if f != text_column]
        raise DataError(f"{source} starts with a header of {delimiter!r}-separated columns {fields}, without the label "
                        f"column {label_column!r}; set --data.label_column {others[0]} (or rename the column)")
    return None


def _read_delimited(text: str, delimiter: str, source: str):
    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                           quoting=3 if delimiter == "\t" else 0)
    except Exception as exc:
        raise DataError(f"cannot parse {source} as {delimiter!r}-separated columns: {str(exc).splitlines()[0]}") from None


def check_label_text_guess(raw: str, texts: list[str], labels: list[str], source: str) -> None:
    """A file guessed to be 'label text' lines whose labels look like words of the texts is not one: refuse it
    (naming what to set) instead of training on first words as labels."""
    lines = [line for line in raw.splitlines() if line.strip()]
    tagged = sum(1 for line in lines[:2000] if len(line.split()) >= 2 and _looks_like_tag(line.split()[-1]))
    if lines and tagged >= 0.9 * min(len(lines), 2000) and "\n\n" in raw.replace("\r", "").replace("\t\n", "\n"):
        raise DataError(f"{source} looks like a CoNLL token-classification file (a token and its BIO tag per line, blank "
                        "lines between sentences); set task: token_classification to train a tagger on it")
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) <= 20:
        return
    once = sum(1 for n in counts.values() if n == 1) / len(counts)
    vocabulary = {w for t in texts[:5000] for w in t.lower().split()}
    wordlike = sum(1 for label in counts if label.lower() in vocabulary) / len(counts)
    if once > 0.3 or wordlike > 0.5:
        common = ", ".join(repr(k) for k, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
        raise DataError(f"{source} was guessed to be 'label text' lines, but its {len(counts)} 'labels' look like words "
                        f"of the texts ({100 * once:.0f}% seen once, {100 * wordlike:.0f}% also words of the texts; most "
                        f"common: {common}); set --data.format (csv, tsv, jsonl) with --data.text_column and "
                        "--data.label_column, or give 'label text' lines")


def _looks_like_tag(value: str) -> bool:
    return value == "O" or (len(value) > 2 and value[1] == "-" and value[0] in "BI")


def read_table(
    path: str,
    *,
    role: str = "train",
    fmt: str = "auto",
    text_column: str = "text",
    label_column: Optional[str] = "label",
    encoding_errors: str = "error",
    plain_lines: bool = False,
) -> Table:
    """Read one file. ``label_column=None`` reads texts only; ``plain_lines`` treats .txt as one text per line."""
    file = resolve_data_path(path)
    check_file(file, role)
    guessed = fmt == "auto"
    fmt = detect_format(file, fmt)
    source = str(file)
    notes: dict[str, int] = {}

    if plain_lines and fmt == "label_text":
        text, bad = decode(read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last line; it does not start an empty one
        return Table(source, [line.rstrip("\r") for line in lines], None, notes)

    if fmt == "label_text":
        text, bad = decode(read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        delimiter = sniff_header(text, source, text_column, label_column)
        if delimiter is not None:  # a delimited table with a header naming the configured columns
            fmt, frame = "csv", _read_delimited(text, delimiter, source)
            return _table_from_frame(frame, source, role, text_column, label_column, notes)
        if label_column is not None and (text_column, label_column) != ("text", "label"):
            raise DataError(f"{source} is read as 'label text' lines, which have no columns, so data.text_column="
                            f"{text_column!r} / data.label_column={label_column!r} cannot apply; give a file with a header "
                            "line naming those columns (, ; | or tab separated), or drop the column settings")
        texts, labels = [], []
        for line in text.splitlines():
            if not line.strip():
                notes["blank_lines_skipped"] = notes.get("blank_lines_skipped", 0) + 1
                continue
            parts = line.strip().split(maxsplit=1)
            labels.append(parts[0])
            texts.append(parts[1] if len(parts) > 1 else "")
        if label_column is not None and guessed:
            check_label_text_guess(text, texts, labels, source)
        return Table(source, texts, labels if label_column is not None else None, notes)

    if fmt == "parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"cannot read Parquet file {source}: {str(exc).splitlines()[0]}; check that it is a valid Parquet file") from None
    elif fmt in ("csv", "tsv"):
        import pandas as pd

        text, bad = decode(read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        try:
            frame = pd.read_csv(
                io.StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                quoting=3 if fmt == "tsv" else 0,  # TSV fields are not quoted: a quote is part of the text
            )
        except Exception as exc:
            raise DataError(f"cannot parse {fmt.upper()} file {source}: {str(exc).splitlines()[0]}; check its delimiter and quoting") from None
    elif fmt == "jsonl":
        import pandas as pd

        text, bad = decode(read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        records = []
        if text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON in {source} at line {exc.lineno}: {exc.msg}") from None
        else:
            for number, record in json_lines(text, source):
                if not isinstance(record, dict):
                    raise DataError(f"line {number} of {source} is not a JSON object; each line must look like {{\"text\": ..., \"label\": ...}}")
                records.append(record)
        frame = pd.DataFrame.from_records(records)
    else:  # pragma: no cover - detect_format only returns the formats above
        raise DataError(f"unknown data format '{fmt}'")

    return _table_from_frame(frame, source, role, text_column, label_column, notes)


def _table_from_frame(frame, source: str, role: str, text_column: str, label_column: Optional[str],
                      notes: dict[str, int]) -> Table:
    if len(frame) == 0:
        raise DataError(f"{role} file has no rows: {source}; it needs at least a few labelled rows")
    texts = [_clean_cell(v) or "" for v in _column(frame, text_column, source, "text_column")]
    labels = None
    if label_column is not None:
        labels = [_clean_cell(v) for v in _column(frame, label_column, source, "label_column")]
        labels = [None if v is None or v.strip() == "" else v.strip() for v in labels]
    return Table(source, texts, labels, notes)
