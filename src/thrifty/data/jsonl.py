"""JSONL input files read row by row, each row checked: what `thrifty generate` (prompts) and `thrifty predict`
(pre-tokenised NER input) read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def is_jsonl(path: str | Path) -> bool:
    return Path(path).suffix.lower() in JSONL_SUFFIXES


def read_records(path: str | Path, role: str, valid: Callable[[Any], bool], problem: str) -> list[Any]:
    """Every record of a JSONL file, in order; the first one `valid` refuses is a DataError: "line N of PATH
    {problem}" (the file's own errors, e.g. not found or not UTF-8, are the readers')."""
    from thrifty.data.readers import check_file, decode, json_lines, read_bytes
    from thrifty.errors import DataError

    path = Path(path)
    check_file(path, role)
    records = []
    for number, record in json_lines(decode(read_bytes(path, role), str(path), "error")[0], str(path)):
        if not valid(record):
            raise DataError(f"line {number} of {path} {problem}")
        records.append(record)
    return records
