"""`thrifty retrain`: a challenger trained on new labelled data, promoted only if it is better."""

from __future__ import annotations

import json
import time
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command, deprecated
from thrifty.errors import ThriftyError

EPILOG = ("retrain settings: --retrain.KEY VALUE (margin, significance, tolerance, holdout_fraction, replay_ratio, "
          "min_new_examples; `thrifty config` lists them); --train.* and --budget.* override the champion's recipe")


@command("train a challenger on new labelled data (feedback, files) and promote it only if it is better "
         "(docs/registry.md)", epilog=EPILOG, config=True)
def retrain(
    config: Annotated[Optional[str], Arg("YAML with a retrain: section (and train:/budget: keys over the "
                                         "champion's)")] = None,
    *,
    name: Annotated[Optional[str], Option("the registered model to retrain (retrain.model)")] = None,
    model: Annotated[Optional[str], Option("deprecated spelling of --name (the registered model's name)")] = None,
    data: Annotated[Optional[list[str]], Option("a labelled file of new data (repeatable; besides the prediction "
                                                "log's feedback)")] = None,
    db: Annotated[Optional[str], Option("the prediction log with the feedback (default: serve "
                                        "models:/NAME@champion's log)")] = None,
    registry: Annotated[Optional[str], Option(words.REGISTRY, metavar="URI")] = None,
    output: Annotated[Optional[str], Option("the retrain's folder (default: runs/retrain/NAME-TIME)",
                                            metavar="FOLDER")] = None,
    wait: Annotated[float, Option("when another retrain of the model runs, wait this long for it (default: exit at "
                                  "once)", metavar="SECONDS")] = 0.0,
    every: Annotated[Optional[str], Option("run again every SPAN (30m, 6h, 1d) until stopped", metavar="SPAN")] = None,
    cron: Annotated[bool, Option("print a crontab line that runs this retrain every --every, instead of running "
                                 "it")] = False,
    no_progress: Annotated[bool, Option(words.NO_PROGRESS)] = False,
    ctx: Context,
) -> int:
    from thrifty.retrain.schedule import cron_line, span_seconds

    if model is not None:
        if name is not None:
            raise ThriftyError("--model is the old spelling of --name; give --name only")
        deprecated("retrain --model NAME", f"retrain --name {model}")
        name = model
    extra = words.as_overrides({"retrain.model": name, "retrain.db": db, "retrain.registry": registry,
                                "retrain.new_data": json.dumps(data) if data else None})
    if cron:
        if not every:
            raise ThriftyError("--cron needs --every SPAN (how often), e.g. --every 6h --cron")
        print(cron_line(every, ctx.argv))
        return 0
    period = span_seconds(every) if every else None
    from thrifty.retrain.challenger import retrain as run_retrain

    while True:
        started = time.monotonic()
        run_retrain(config, overrides=ctx.overrides + extra, output=output, wait_seconds=wait,
                    progress=not no_progress)
        if period is None:
            return 0
        pause = max(0.0, period - (time.monotonic() - started))
        print(f"thrifty retrain: next run in {pause / 60:.0f} min (--every {every}); Ctrl-C stops", flush=True)
        time.sleep(pause)
