"""`thrifty tune`: the hyperparameter search."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import BARE, Arg, Context, Option, command, deprecated
from thrifty.errors import ThriftyError

DEFAULT_OUTPUT = "runs/tune"


@command("hyperparameter search (Optuna TPE, pruning, budget; SQLite, or PostgreSQL across machines)", config=True,
         epilog="the config's budget section is the budget of the whole search, e.g. --budget.max_minutes 30")
def tune(
    config: Annotated[Optional[str], Arg("YAML config to start from (default: built-in defaults)")] = None,
    *,
    trials: Annotated[int, Option("number of trials (with --resume: the total, done ones included)")] = 10,
    output: Annotated[Optional[str], Option("the search folder to write: study.db, trials/, tune.json, "
                                            f"best_config.yaml (default: {DEFAULT_OUTPUT})", metavar="RUN_DIR")] = None,
    resume: Annotated[Optional[str], Option("the search folder of an interrupted search: continue it (a bare "
                                            "--resume, the old spelling, continues --output)", metavar="RUN_DIR",
                                            bare=True)] = None,
    model: Annotated[Optional[str], Option(words.MODEL + " (same as --model.name)")] = None,
    space: Annotated[Optional[str], Option("YAML of config keys to ranges, e.g. 'train.learning_rate: {low: 1e-5, "
                                           "high: 1e-3, log: true}'; merged into the default space of the strategy (a "
                                           "key set to null is left out)")] = None,
    storage: Annotated[Optional[str], Option("a shared study for workers on several machines: a database URL Optuna "
                                             "accepts, e.g. postgresql://user:password@host:5432/db (default: "
                                             "OUT/study.db, SQLite, one machine); every worker runs the same command "
                                             "and --trials counts over all of them")] = None,
    study: Annotated[Optional[str], Option("the study's name in --storage (default: the --output folder's "
                                           "name)")] = None,
    heartbeat: Annotated[int, Option("with --storage: each worker beats this often; a trial silent for 3 beats is "
                                     "failed and re-run by another worker", metavar="SECONDS")] = 60,
    multi_objective: Annotated[bool, Option("search accuracy against cost; plots the Pareto front")] = False,
    pruner: Annotated[Literal["median", "asha", "none"], Option(
        "stop poor trials early (from their 2nd evaluation, i.e. one epoch): below the median of earlier trials "
        "(default), successive halving (cheaper, harsher), or never")] = "median",
    no_progress: Annotated[bool, Option(words.NO_PROGRESS)] = False,
    ctx: Context,
) -> int:
    from thrifty.tuning.search import tune as run_search

    if resume == BARE:
        deprecated("tune --resume (a flag)", f"tune --resume {output or DEFAULT_OUTPUT}")
        resume = output or DEFAULT_OUTPUT
    if resume and config:
        raise ThriftyError("--resume continues the search saved in its folder; drop the config argument")
    if resume and output and resume != output:
        raise ThriftyError(f"--resume {resume} is the search folder; drop --output {output}")
    overrides = words.with_model(model, ctx.overrides)
    run_search(config, trials=trials, output=resume or output or DEFAULT_OUTPUT, overrides=overrides, space=space,
               resume=bool(resume), multi_objective=multi_objective, pruner=pruner, progress=not no_progress,
               storage=storage, study_name=study, heartbeat_seconds=heartbeat)
    return 0
