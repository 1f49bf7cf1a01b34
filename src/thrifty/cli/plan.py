"""`thrifty estimate` and `thrifty recommend`: a run's cost before it starts, and the run that fits a budget."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command, file_or_folder
from thrifty.errors import ThriftyError

CONFIG = Annotated[Optional[str], Arg(words.CONFIG)]


@command("parameters, tokens, FLOPs, memory and time of a run, before it starts", config=True)
def estimate(
    config: CONFIG = None,
    *,
    as_json: Annotated[bool, Option("print one JSON object instead of the summary", flag="--json")] = False,
    output: Annotated[Optional[str], Option("also save the estimate as estimate.json in this folder",
                                            metavar="FOLDER")] = None,
    output_file: Annotated[Optional[str], Option("also save the estimate as JSON to this file", metavar="FILE")] = None,
    model: Annotated[Optional[str], Option(words.MODEL + " (same as --model.name)")] = None,
    hardware: Annotated[Optional[str], Option("predict time and price on this profile instead of this machine (same "
                                              "as --cost.hardware; `thrifty hardware` lists them)")] = None,
    processes: Annotated[int, Option("predict `thrifty train --processes N` (each process its share of every batch)",
                                     metavar="N")] = 1,
    ctx: Context,
) -> int:
    from thrifty.cost.estimate import estimate as run_estimate
    from thrifty.cost.estimate import format_estimate
    from thrifty.runs.run_dir import atomic_write_text

    out_path = file_or_folder(output, output_file, "estimate.json")
    overrides = words.with_model(model, ctx.overrides) + words.as_overrides({"cost.hardware": hardware})
    if processes < 1:
        raise ThriftyError(f"--processes {processes}: give 1 or more")
    result = run_estimate(config, overrides, processes=processes)
    text = json.dumps(result, indent=2)
    if out_path is not None:
        atomic_write_text(out_path, text + "\n")
    print(text if as_json else format_estimate(result))
    return 0


@command("model, strategy, epochs and max length that fit a budget and your data", config=True)
def recommend(
    config: Annotated[Optional[str], Arg("YAML config to start from (default: built-in defaults)")] = None,
    *,
    data: Annotated[Optional[str], Option("labelled training file (same as --data.train)")] = None,
    budget: Annotated[Optional[float], Option("time budget of the run (same as --budget.max_minutes; "
                                              "--budget.max_cost and --budget.max_flops work too)",
                                              metavar="MINUTES")] = None,
    hardware: Annotated[Optional[str], Option("plan for this hardware profile instead of this machine (`thrifty "
                                              "hardware`)")] = None,
    models: Annotated[Optional[str], Option("comma-separated candidates (default: the catalog's models available "
                                            "offline)")] = None,
    output: Annotated[Optional[str], Option("write the recommended config as config.yaml in this folder (ready for "
                                            "`thrifty train`)", metavar="FOLDER")] = None,
    output_file: Annotated[Optional[str], Option("write the recommended config as YAML to this file",
                                                 metavar="FILE")] = None,
    as_json: Annotated[bool, Option(words.JSON, flag="--json")] = False,
    ctx: Context,
) -> int:
    from thrifty.config import load_config
    from thrifty.planning.recommend import format_recommendation, save_recommendation
    from thrifty.planning.recommend import recommend as run_recommend

    out_path = file_or_folder(output, output_file, "config.yaml")
    extra = words.as_overrides({"data.train": data, "budget.max_minutes": budget, "cost.hardware": hardware})
    base = load_config(config, extra + ctx.overrides)
    if out_path is not None and out_path.exists():
        raise ThriftyError(f"{out_path} already exists; choose another --output-file")
    candidates = [m.strip() for m in models.split(",") if m.strip()] if models else None
    result = run_recommend(base, candidates, log=lambda m: print(m, file=sys.stderr))
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save_recommendation(result, out_path)
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2, default=str))
    else:
        print(format_recommendation(result))
        if out_path is not None:
            print(f"wrote {out_path}; train it with: thrifty train {out_path}")
    return 0
