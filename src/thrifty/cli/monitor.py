"""`thrifty monitor`: recent traffic against the training data."""

from __future__ import annotations

from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Option, command


@command("recent traffic (the prediction log) against the training data: drift and accuracy reports; exit code 1 "
         "when drift is flagged", shows_passes=True)
def monitor(
    model_dir: Annotated[str, Arg("the run folder (or model/ folder) being served, or models:/NAME@champion from the "
                                  "registry", metavar="MODEL_DIR")],
    *,
    db: Annotated[Optional[str], Option("the prediction log thrifty serve wrote (default: SQLite in RUN_DIR/serve/; "
                                        "for models:/NAME@..., the log serve models:/NAME@... writes)")] = None,
    registry: Annotated[Optional[str], Option(words.REGISTRY, metavar="URI")] = None,
    since: Annotated[Optional[str], Option("only predictions since: a span (30m, 24h, 7d, 2w) or a date "
                                           "(2026-11-28)")] = None,
    reference: Annotated[Optional[str], Option("labelled reference texts, for a model folder without its run "
                                               "(default: the run's training texts and validation split)")] = None,
    output: Annotated[Optional[str], Option("the folder for report.json and report.html (default: "
                                            "RUN_DIR/monitor/TIME)", metavar="FOLDER")] = None,
    max_texts: Annotated[int, Option("texts per side for the text checks")] = 2000,
    min_feedback: Annotated[int, Option("accuracy is reported (and judged) only from N feedback rows; fewer: the "
                                        "count, no verdict", metavar="N")] = 30,
) -> int:
    from thrifty.monitoring.monitor import console_lines
    from thrifty.monitoring.monitor import monitor as run_monitor

    report = run_monitor(model_dir, db=db, since=since, reference=reference, output=output, max_texts=max_texts,
                         registry=registry, min_feedback=min_feedback)
    print("\n".join(console_lines(report)))
    return 1 if report["drift"] else 0
