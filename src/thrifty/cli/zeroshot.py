"""`thrifty zeroshot`: a classifier from label names alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Option, command
from thrifty.errors import ThriftyError


@command("a classifier from label names alone, before any labelled example (each text gets the nearest label "
         "description)", shows_passes=True)
def zeroshot(
    *,
    labels: Annotated[str, Option("comma-separated labels, e.g. negative,positive; or a .txt file, one label per line",
                                  required=True)],
    describe: Annotated[Optional[list[str]], Option("words for a label that is a code (repeatable), e.g. --describe "
                                                    "0=negative --describe 1=positive", metavar="LABEL=WORDS")] = None,
    model: Annotated[str, Option(words.MODEL + ": a sentence encoder (hub id, local folder or thrifty model "
                                 "folder)")] = "all-MiniLM-L6-v2",
    output: Annotated[str, Option("the model folder to write", metavar="MODEL_DIR")] = "runs/zeroshot",
    max_length: Annotated[int, Option("tokens of a text read when predicting")] = 256,
    overwrite: Annotated[bool, Option("replace an existing model folder")] = False,
    trust_remote_code: Annotated[bool, Option(words.TRUST_REMOTE_CODE)] = False,
) -> int:
    from thrifty.inference.zeroshot import zeroshot as write_zeroshot

    names = label_names(labels)
    descriptions = {}
    for item in describe or []:
        label, sep, text = item.partition("=")
        if not sep or not label.strip() or not text.strip():
            raise ThriftyError(f"--describe {item!r} must be LABEL=WORDS, e.g. --describe 0=negative")
        descriptions[label.strip()] = text.strip()
    folder = write_zeroshot(names, output, descriptions=descriptions or None, model=model, max_length=max_length,
                            overwrite=overwrite, trust_remote_code=trust_remote_code)
    print(f"wrote a zero-shot classifier for {len(names)} labels to {folder}; nothing was trained: each text gets the "
          f"label whose description is nearest. Try: thrifty predict {folder} --text \"...\"")
    return 0


def label_names(given: str) -> list[str]:
    """--labels: a .txt file (one label per line) or a comma-separated list."""
    path = Path(given).expanduser()
    if path.suffix == ".txt" or path.is_file():
        try:
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ThriftyError(f"cannot read labels from {path}: {exc}; give a UTF-8 .txt file, one label per line") from None
    return [label.strip() for label in given.split(",")]
