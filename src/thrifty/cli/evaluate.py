"""`thrifty evaluate`: metrics of a model on a labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Option, command


@command("metrics and a plot of a model on a labelled (or tagged) file; a model that writes text: on prompts and "
         "their answers", shows_passes=True)
def evaluate(
    model_dir: Annotated[str, Arg(words.MODEL_DIR + " (a decoder's own folder too, to compare with its fine-tuned "
                                  "runs)", metavar="MODEL_DIR")],
    *,
    data: Annotated[str, Option("labelled file (any supported format); for a model that writes text, "
                                "prompt/completion or chat JSONL (source/target for seq2seq)", required=True)],
    output: Annotated[Optional[str], Option("the folder for metrics.json and the task's plot (a confusion "
                                            "matrix, per-type F1), or answers.jsonl (default: RUN_DIR/evaluations/FILE)",
                                            metavar="FOLDER")] = None,
    text_column: Annotated[Optional[str], Option(words.DATA_TEXT_COLUMN)] = None,
    label_column: Annotated[Optional[str], Option(words.DATA_LABEL_COLUMN)] = None,
    batch_size: Annotated[int, Option(words.BATCH_SIZE)] = 128,
    backend: Annotated[str, Option(words.BACKEND, choices=words.BACKEND_CHOICES)] = "auto",
    lanes: Annotated[Optional[int], Option(words.LANES)] = None,
) -> int:
    from thrifty.api import evaluate as run_evaluation
    from thrifty.evaluation.report import per_type_lines

    metrics = run_evaluation(model_dir, data, output=output, text_column=text_column, label_column=label_column,
                             batch_size=batch_size, backend=backend, lanes=lanes)
    print(f"{Path(data).name}: {metrics['summary']}")
    for line in per_type_lines(metrics):  # token classification: the table a person reads first
        print(line)
    print(f"wrote {metrics['output_dir']}/metrics.json and {metrics['plot'] or metrics['answers']}")
    return 0
