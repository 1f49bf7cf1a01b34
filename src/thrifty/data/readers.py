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
from typing import Optional

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


def _check_file(path: Path, role: str) -> None:
    if not path.exists():
        raise DataError(f"{role} file not found: {path}; check the path in data.{role} (relative paths start at the current folder)")
    if path.is_dir():
        raise DataError(f"{role} path is a folder, not a file: {path}; point data.{role} at a data file")
    if path.stat().st_size == 0:
        raise DataError(f"{role} file is empty: {path}; it needs at least a few labelled rows")


def _read_bytes(path: Path, role: str) -> bytes:
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
    _check_file(file, role)
    fmt = detect_format(file, fmt)
    source = str(file)
    notes: dict[str, int] = {}

    if plain_lines and fmt == "label_text":
        text, bad = decode(_read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last line; it does not start an empty one
        return Table(source, [line.rstrip("\r") for line in lines], None, notes)

    if fmt == "label_text":
        text, bad = decode(_read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        texts, labels = [], []
        for line in text.splitlines():
            if not line.strip():
                notes["blank_lines_skipped"] = notes.get("blank_lines_skipped", 0) + 1
                continue
            parts = line.strip().split(maxsplit=1)
            labels.append(parts[0])
            texts.append(parts[1] if len(parts) > 1 else "")
        return Table(source, texts, labels if label_column is not None else None, notes)

    if fmt == "parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"cannot read Parquet file {source}: {str(exc).splitlines()[0]}; check that it is a valid Parquet file") from None
    elif fmt in ("csv", "tsv"):
        import pandas as pd

        text, bad = decode(_read_bytes(file, role), source, encoding_errors)
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

        text, bad = decode(_read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        records = []
        if text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON in {source} at line {exc.lineno}: {exc.msg}") from None
        else:
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"invalid JSON in {source} at line {number}: {exc.msg}; each line must be one JSON object") from None
                if not isinstance(record, dict):
                    raise DataError(f"line {number} of {source} is not a JSON object; each line must look like {{\"text\": ..., \"label\": ...}}")
                records.append(record)
        frame = pd.DataFrame.from_records(records)
    else:  # pragma: no cover - detect_format only returns the formats above
        raise DataError(f"unknown data format '{fmt}'")

    if len(frame) == 0:
        raise DataError(f"{role} file has no rows: {source}; it needs at least a few labelled rows")
    texts = [_clean_cell(v) or "" for v in _column(frame, text_column, source, "text_column")]
    labels = None
    if label_column is not None:
        labels = [_clean_cell(v) for v in _column(frame, label_column, source, "label_column")]
        labels = [None if v is None or v.strip() == "" else v.strip() for v in labels]
    return Table(source, texts, labels, notes)
