"""`thrifty train` and `thrifty adapt`: runs from a config."""

from __future__ import annotations

from typing import Annotated, Optional

from thrifty.cli.command import Arg, Context, Option, command
from thrifty.cli import vocabulary as words
from thrifty.errors import ThriftyError

PROCESSES = ("data-parallel training in N processes on this machine (one per GPU; on a CPU the cores split between "
             "them), PyTorch DDP; train.batch_size is the batch over all N. Several machines: torchrun or accelerate "
             "launch (docs/distributed.md)")


@command("fine-tune a model from a YAML config", epilog=words.EPILOG_TRAIN, config=True)
def train(
    config: Annotated[Optional[str], Arg("YAML config (default: built-in defaults on the bundled Banking77 sample)")] = None,
    *,
    output: Annotated[Optional[str], Option(words.OUTPUT_RUN, metavar="RUN_DIR")] = None,
    resume: Annotated[Optional[str], Option(words.RESUME, metavar="RUN_DIR")] = None,
    model: Annotated[Optional[str], Option(words.MODEL + " as the base (same as --model.name)")] = None,
    overwrite: Annotated[bool, Option("replace an existing run folder")] = False,
    no_progress: Annotated[bool, Option(words.NO_PROGRESS)] = False,
    processes: Annotated[Optional[int], Option(PROCESSES, metavar="N")] = None,
    ctx: Context,
) -> int:
    if resume and (config or output or model):
        raise ThriftyError("--resume takes the run folder only; drop the config and --output (the saved config is used)")
    if processes is not None and processes != 1:
        from thrifty.training.distributed import launch, launched

        if launched()[1] > 1:
            raise ThriftyError("--processes starts the processes itself: drop it under torchrun or accelerate launch")
        return launch(without_option(ctx.argv, "--processes"), processes)
    from thrifty.training.recipe import train as run_training

    overrides = words.with_model(model, ctx.overrides)
    result = run_training(config, output=output, overrides=overrides, resume=resume, overwrite=overwrite,
                          progress=not no_progress, clock_start=ctx.started)  # the budget counts imports too
    failed = (result.metrics.get("audit") or {}).get("failed")
    if failed:  # the run is complete and its model saved; the gate (audit.fail_on) says it should not ship
        print("audit FAILED: " + "; ".join(failed))
        return 1
    return 0


def without_option(argv: list[str], option: str) -> list[str]:
    """ARGV less `option VALUE` / `option=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


@command("continued pre-training on unlabelled in-domain text (masked LM; causal LM for decoders)",
         epilog=words.EPILOG_TRAIN, config=True)
def adapt(
    config: Annotated[Optional[str], Arg("YAML config (model, data, train, adapt sections; default: built-in "
                                         "defaults)")] = None,
    *,
    data: Annotated[Optional[str], Option("unlabelled text: a .txt file (one document per line), a folder of .txt "
                                          "files, or a table with a text column (same as --data.train)")] = None,
    output: Annotated[Optional[str], Option("the run folder to write; RUN_DIR/model is the adapted model for --model "
                                            "of later runs", metavar="RUN_DIR")] = None,
    resume: Annotated[Optional[str], Option(words.RESUME, metavar="RUN_DIR")] = None,
    model: Annotated[Optional[str], Option(words.MODEL + " as the start (same as --model.name)")] = None,
    overwrite: Annotated[bool, Option("replace an existing run folder")] = False,
    no_progress: Annotated[bool, Option(words.NO_PROGRESS)] = False,
    ctx: Context,
) -> int:
    from thrifty.training.adapt import adapt as run_adaptation

    overrides = words.with_model(model, ctx.overrides)
    if resume and (config or output or data or model):
        raise ThriftyError("--resume takes the run folder only; drop the config, --data and --output (the saved config is used)")
    if not resume and data is None and not any(o.startswith("--data.train") for o in overrides):
        raise ThriftyError("thrifty adapt needs unlabelled text: --data FILE (a .txt file, a folder of .txt files, or a "
                           "table with a text column)")
    run_adaptation(config, data=data, output=output, overrides=overrides, resume=resume, overwrite=overwrite,
                   progress=not no_progress, clock_start=ctx.started)
    return 0
