"""`thrifty predict`: labels (or entities) for new texts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Option, command, file_or_folder
from thrifty.errors import ThriftyError


@command("labels (or entities) for new texts", shows_passes=True)
def predict(
    model_dir: Annotated[str, Arg(words.MODEL_DIR, metavar="MODEL_DIR")],
    *,
    text: Annotated[Optional[list[str]], Option("a text to classify (repeatable); results go to stdout as JSON lines",
                                                group="source", required=True)] = None,
    input: Annotated[Optional[str], Option("file of texts: .txt (one per line) or CSV/TSV/JSONL/Parquet; NER also "  # noqa: A002
                                           "takes pre-tokenised JSONL ({\"tokens\": [...]})", group="source",
                                           metavar="FILE")] = None,
    output: Annotated[Optional[str], Option("the folder to write predictions.jsonl to (default: stdout as JSON lines)",
                                            metavar="FOLDER")] = None,
    output_file: Annotated[Optional[str], Option(words.OUTPUT_FILE + ": .jsonl or .csv (default: stdout as JSON lines)",
                                                 metavar="FILE")] = None,
    text_column: Annotated[Optional[str], Option(words.DATA_TEXT_COLUMN)] = None,
    overwrite: Annotated[bool, Option("replace an existing output file")] = False,
    batch_size: Annotated[int, Option(words.BATCH_SIZE)] = 128,
    backend: Annotated[str, Option(words.BACKEND, choices=words.BACKEND_CHOICES)] = "auto",
    lanes: Annotated[Optional[int], Option(words.LANES)] = None,
) -> int:
    from thrifty.data import results as files
    from thrifty.data.readers import read_table
    from thrifty.inference.predictor import Predictor
    from thrifty.runs.run_dir import atomic_write_text

    out_path = _output_path(output, output_file, overwrite)
    predictor = Predictor.load(model_dir, backend=backend, lanes=lanes)
    if predictor.traits.tags_words:
        return _predict_entities(predictor, text, input, text_column, batch_size, out_path)
    if text is not None:
        texts = text
    else:
        table = read_table(input, role="input", text_column=text_column or predictor.text_column,
                           label_column=None, plain_lines=True)
        texts = table.texts
    results = predictor.predict(texts, batch_size)
    if out_path is None:
        print(files.as_json_lines(files.labelled(texts, results)), end="")
        return 0
    if out_path.suffix.lower() == ".jsonl":
        content = files.as_json_lines(files.labelled(texts, results))
    else:
        content = files.labels_csv(texts, results, predictor.label_names)
    atomic_write_text(out_path, content)  # a crash mid-write never leaves half a results file
    print(f"wrote {len(results)} predictions to {out_path}", file=sys.stderr)
    return 0


def _output_path(output: Optional[str], output_file: Optional[str], overwrite: bool) -> Optional[Path]:
    out_path = file_or_folder(output, output_file, "predictions.jsonl")
    if out_path is not None:
        if out_path.suffix.lower() not in (".jsonl", ".csv"):
            raise ThriftyError(f"--output-file {out_path} must end in .jsonl or .csv")
        if out_path.exists() and not overwrite:
            raise ThriftyError(f"{out_path} already exists; choose another --output-file or add --overwrite")
    return out_path


def _predict_entities(predictor, text: Optional[list[str]], input: Optional[str], text_column: Optional[str],  # noqa: A002
                      batch_size: int, out_path: Optional[Path]) -> int:
    """NER: raw text lines (or --text) -> entities with character offsets; JSONL with a tokens list -> the same
    for pre-tokenised input. One JSON line per input, or one CSV row per entity."""
    from thrifty.data import results as files
    from thrifty.data.jsonl import is_jsonl, read_records
    from thrifty.data.readers import read_table
    from thrifty.runs.run_dir import atomic_write_text

    column = predictor.data_config.tokens_column
    if text is not None:
        results = predictor.entities(text, batch_size=batch_size)
    elif is_jsonl(input):
        records = read_records(input, "input", lambda r: isinstance(r, dict) and isinstance(r.get(column), list),
                               f"has no '{column}' list of words; pre-tokenised input looks like "
                               f"{{\"{column}\": [\"EU\", \"rejects\", ...]}} (or give plain text lines in a .txt)")
        results = predictor.entities(tokens=[[str(w) for w in r[column]] for r in records], batch_size=batch_size)
    else:
        texts = read_table(input, role="input", text_column=text_column or predictor.text_column,
                           label_column=None, plain_lines=True).texts
        results = predictor.entities(texts, batch_size=batch_size)
    if out_path is None:
        print(files.as_json_lines(results), end="")
        return 0
    jsonl = out_path.suffix.lower() == ".jsonl"
    atomic_write_text(out_path, files.as_json_lines(results) if jsonl else files.entities_csv(results))
    print(f"wrote entities of {len(results)} inputs to {out_path}", file=sys.stderr)
    return 0
