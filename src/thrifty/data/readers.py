"""Read labelled (or unlabelled) text from CSV, TSV, JSONL, Parquet and `label text` line files.

`read_table` is the one function every command reads a table with (train, evaluate, predict, audit, retrain,
monitor): the same delimiter sniffing, column checks and cell cleaning everywhere. The delimiter of a .csv/.tsv
(or a .txt with a header line) is `data.delimiter`: `auto` picks one of , ; | and tab (the one whose split of the
header line names the configured columns, else csv.Sniffer's guess on the first 64 KB, else the suffix's own),
and the table records which it used and how, for the data report.

Every reader returns plain Python lists of strings: texts, and labels as strings (integer labels are kept as
their decimal text, so ``0``/``1`` files and ``neg``/``pos`` files behave alike). Undecodable bytes are a
hard error naming the line numbers unless the user chose ``encoding_errors: replace``; nothing is skipped
without being counted.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

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
    delimiter: Optional[str] = None  # the column delimiter a delimited table was split by (None: JSONL, Parquet, lines)
    delimiter_chosen: Optional[str] = None  # "given" (data.delimiter), "sniffed", or "default" (the suffix's own)
    columns: dict[str, list[Optional[str]]] = field(default_factory=dict)  # extra_columns that the file has
    column_names: list[str] = field(default_factory=list)  # every column of a table, as read

    def delimiter_text(self) -> Optional[str]:
        """e.g. "';' (sniffed)", for reports; None when the file has no delimiter."""
        return None if self.delimiter is None else f"{delimiter_name(self.delimiter)} ({self.delimiter_chosen})"


def resolve_data_path(path: str) -> Path:
    """Map the built-in sample name to its bundled file; leave other paths alone."""
    if path == BUILTIN_DATA:
        return Path(str(resources.files("thrifty.resources").joinpath("banking77_sample.csv")))
    return Path(path).expanduser()


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return FORMATS_BY_SUFFIX.get(path.suffix.lower(), "label_text")


# Where the user gave each role's path: the setting or flag a message tells them to fix.
ROLE_SOURCES = {"train": "data.train", "validation": "data.validation", "test": "data.test", "input": "--input",
                "evaluation": "--data", "labelled": "--data", "new data": "--data", "replay data": "retrain.replay_data"}


def check_file(path: Path, role: str) -> None:
    where = ROLE_SOURCES.get(role, f"the {role} path")
    if not path.exists():
        raise DataError(f"{role} file not found: {path}; check {where} (relative paths start at the current folder)")
    if path.is_dir():
        raise DataError(f"{role} path is a folder, not a file: {path}; point {where} at a data file")
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


def _column(frame, name: str, source: str, option: str, flags: dict[str, Optional[str]],
            delimiter: Optional[str], chosen: Optional[str]) -> list:
    """A column of the frame; a missing one is refused with the columns there are, the delimiter they were split by
    (and how it was chosen), and what to set."""
    if name not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns)
        split, hint = "", f"set {flags[option]} to the right column"
        if delimiter is not None:
            split = f"; split by {delimiter_name(delimiter)}, {chosen}"
            where = flags.get("delimiter")
            one = str(frame.columns[0]) if len(frame.columns) == 1 else ""
            looks = [d for d in DELIMITERS if d != delimiter and d in one]
            if looks and where:
                hint = (f"its header line looks {delimiter_name(looks[0])}-separated: set {where} "
                        f"{delimiter_value(looks[0])}, or {flags[option]} to the right column")
            elif looks:
                hint = (f"its header line looks {delimiter_name(looks[0])}-separated; give the header the same "
                        f"delimiter as the rows, or set {flags[option]}")
            elif where:
                hint += f", or {where} (auto, ',', ';', '|' or tab) if the columns are split wrongly"
        raise DataError(f"column '{name}' not found in {source} (columns: {columns}{split}); {hint}")
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


DELIMITERS = (",", ";", "|", "\t")  # what a header line may be split by; data.delimiter names one of them, or auto
SNIFF_CHARS = 64_000  # csv.Sniffer reads the first whole lines up to this many characters
CONFIG_ROLES = ("train", "validation", "test", "unlabelled")  # files named by data.*: --data.delimiter applies


def delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def delimiter_value(delimiter: str) -> str:
    """As typed after --data.delimiter on a shell command line."""
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


def delimiter_setting(value: Optional[str]) -> str:
    """data.delimiter as its character, or "auto": a tab may be written tab, \\t or a real tab."""
    if value is None or value == "auto":
        return "auto"
    return "\t" if value in ("tab", "\\t", "\t") else value


def _header_fields(text: str, delimiter: str) -> list[str]:
    first = text.split("\n", 1)[0].rstrip("\r")
    return [f.strip().strip('"') for f in first.split(delimiter)]


def _names_columns(text: str, delimiter: str, text_column: str, label_column: Optional[str]) -> bool:
    fields = _header_fields(text, delimiter)
    return text_column in fields and (label_column is None or label_column in fields)


def sniffed(text: str) -> Optional[str]:
    """csv.Sniffer's delimiter among DELIMITERS for the first whole lines of `text`; None when it cannot tell."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return None


def choose_delimiter(text: str, setting: str, default: str, text_column: str, label_column: Optional[str]
                     ) -> tuple[str, str]:
    """(delimiter, how it was chosen) of a .csv/.tsv table. Given: as given. Auto: the suffix's own delimiter when its
    split of the header line names the configured columns (files that read before read the same); else the one
    delimiter whose split does (csv.Sniffer's pick when several do); else csv.Sniffer's guess; else the suffix's own."""
    setting = delimiter_setting(setting)
    if setting != "auto":
        return setting, "given"
    if _names_columns(text, default, text_column, label_column):
        return default, "sniffed"
    naming = [d for d in DELIMITERS if d != default and _names_columns(text, d, text_column, label_column)]
    guess = sniffed(text)
    if guess in naming or (naming == [] and guess is not None):
        return guess, "sniffed"
    if naming:
        return naming[0], "sniffed"
    return default, "default"


def sniff_header(text: str, source: str, text_column: str, label_column: Optional[str],
                 delimiters: Sequence[str] = DELIMITERS) -> Optional[str]:
    """The delimiter of a first line that names the text column (and the label column) as a header; None when the
    first line is no such header. A header naming the text column but not the configured label column is refused
    with the columns it does name: a silent 'label text' guess would train on the first words of the texts."""
    for delimiter in delimiters:
        fields = _header_fields(text, delimiter)
        if len(fields) < 2 or text_column not in fields:
            continue
        if label_column is None or label_column in fields:
            return delimiter
        others = [f for f in fields if f != text_column]
        raise DataError(f"{source} starts with a header of {delimiter_name(delimiter)}-separated columns {fields}, "
                        f"without the label column {label_column!r}; set --data.label_column {others[0]} (or rename "
                        "the column)")
    return None


def _read_delimited(text: str, delimiter: str, source: str):
    import pandas as pd

    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                           quoting=3 if delimiter == "\t" else 0)
    except Exception as exc:
        raise DataError(f"cannot parse {source} as {delimiter_name(delimiter)}-separated columns: "
                        f"{str(exc).splitlines()[0]}; check its quoting and its delimiter (data.delimiter: auto, ',', "
                        "';', '|' or tab)") from None


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
    delimiter: str = "auto",
    extra_columns: Sequence[str] = (),
    flags: Optional[dict[str, Optional[str]]] = None,
) -> Table:
    """Read one file. ``label_column=None`` reads texts only; ``plain_lines`` treats .txt as one text per line.
    ``delimiter``: data.delimiter (auto, or one of DELIMITERS; tab may be written tab). ``extra_columns``: more
    columns to keep (in ``Table.columns`` when the file has them; the caller judges a missing one). ``flags``: the
    option that sets text_column, label_column and delimiter, for messages (default: the --data.* settings; no
    delimiter setting outside the data.* files)."""
    file = resolve_data_path(path)
    check_file(file, role)
    guessed = fmt == "auto"
    fmt = detect_format(file, fmt)
    source = str(file)
    notes: dict[str, int] = {}
    setting = delimiter_setting(delimiter)
    if setting != "auto" and setting not in DELIMITERS:
        raise DataError(f"data.delimiter={delimiter!r} is not one of auto, ',', ';', '|' or tab")
    flags = {"text_column": "--data.text_column", "label_column": "--data.label_column",
             "delimiter": "--data.delimiter" if role in CONFIG_ROLES else None, **(flags or {})}

    def frame_table(frame, used: Optional[str], chosen: Optional[str]) -> Table:
        return _table_from_frame(frame, source, role, text_column, label_column, notes, used, chosen, extra_columns,
                                 flags)

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
        used = sniff_header(text, source, text_column, label_column, DELIMITERS if setting == "auto" else (setting,))
        if used is not None:  # a delimited table with a header naming the configured columns
            return frame_table(_read_delimited(text, used, source), used, "given" if setting != "auto" else "sniffed")
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

    if fmt in ("csv", "tsv"):
        text, bad = decode(read_bytes(file, role), source, encoding_errors)
        notes["lines_with_replaced_bytes"] = bad
        used, chosen = choose_delimiter(text, setting, "," if fmt == "csv" else "\t", text_column, label_column)
        return frame_table(_read_delimited(text, used, source), used, chosen)

    import pandas as pd

    if fmt == "parquet":
        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"cannot read Parquet file {source}: {str(exc).splitlines()[0]}; check that it is a valid Parquet file") from None
    elif fmt == "jsonl":
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

    return frame_table(frame, None, None)


def column_names(path: str, role: str = "labelled") -> list[str]:
    """The column names of a table's header, without reading its rows (what layout is this file?): CSV/TSV (and a
    .txt with a header) split by the delimiter that splits it (csv.Sniffer's, else the suffix's own), the keys of a
    JSON Lines file's first record, a Parquet file's schema. A file that cannot be read is one DataError line."""
    file = resolve_data_path(path)
    check_file(file, role)
    fmt, source = detect_format(file), str(file)
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            return list(pq.read_schema(file).names)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"cannot read Parquet file {source}: {str(exc).splitlines()[0]}; check that it is a valid "
                            "Parquet file") from None
    text, _ = decode(read_bytes(file, role), source, "error")
    if fmt == "jsonl":  # JSON Lines (the first record) or one JSON array of records
        if text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON in {source} at line {exc.lineno}: {exc.msg}") from None
            first = records[0] if records else None
        else:
            first = next((record for _, record in json_lines(text, source)), None)
        return [str(key) for key in first] if isinstance(first, dict) else []
    default = "\t" if fmt == "tsv" else ","
    return _header_fields(text, sniffed(text) or default)


def _table_from_frame(frame, source: str, role: str, text_column: str, label_column: Optional[str],
                      notes: dict[str, int], delimiter: Optional[str] = None, chosen: Optional[str] = None,
                      extra_columns: Sequence[str] = (), flags: Optional[dict[str, Optional[str]]] = None) -> Table:
    flags = flags or {"text_column": "--data.text_column", "label_column": "--data.label_column"}
    if len(frame) == 0:
        raise DataError(f"{role} file has no rows: {source}; it needs at least a few labelled rows")
    texts = [_clean_cell(v) or "" for v in _column(frame, text_column, source, "text_column", flags, delimiter, chosen)]
    labels = None
    if label_column is not None:
        labels = [_clean_cell(v) for v in _column(frame, label_column, source, "label_column", flags, delimiter, chosen)]
        labels = [None if v is None or v.strip() == "" else v.strip() for v in labels]
    extra = {name: [_clean_cell(v) for v in frame[name].tolist()] for name in extra_columns if name in frame.columns}
    return Table(source, texts, labels, notes, delimiter, chosen, extra, [str(c) for c in frame.columns])
