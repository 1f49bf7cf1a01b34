"""The `thrifty` command line: the dispatch table, the parser generated from it, and main()."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Optional, Union

from thrifty.cli import audit, evaluate, export, generate, info, monitor, plan, predict, registry, retrain, serve, tune
from thrifty.cli import train, zeroshot
from thrifty.cli.command import Context, Family, add_options, call
from thrifty.errors import Interrupted, ThriftyError

# The one dispatch table: command name -> the typed function that is the command (or a family of them).
COMMANDS: dict[str, Union[Callable[..., int], Family]] = {
    "train": train.train,
    "adapt": train.adapt,
    "zeroshot": zeroshot.zeroshot,
    "evaluate": evaluate.evaluate,
    "predict": predict.predict,
    "generate": generate.generate,
    "serve": serve.serve,
    "export": export.export,
    "monitor": monitor.monitor,
    "audit": audit.audit,
    "registry": registry.REGISTRY,
    "retrain": retrain.retrain,
    "migrate": serve.migrate,
    "estimate": plan.estimate,
    "tune": tune.tune,
    "recommend": plan.recommend,
    "models": info.models,
    "hardware": info.hardware,
    "config": info.config,
}
DEBUG = "show tracebacks for errors, and libraries' warnings and logs"
QUIET = "no progress bars or progress lines (results and errors are still printed)"


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--section.key value` pairs (config overrides) from the command's own arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and ("." in name or name == "--task") and not arg[2:3].isdigit():
            if "=" in arg:
                overrides.append(arg)
                i += 1
            else:
                overrides.extend(argv[i : i + 2])
                i += 2
            continue
        rest.append(arg)
        i += 1
    return rest, overrides


def _subparser(sub, name: str, fn: Callable[..., int], common: argparse.ArgumentParser) -> None:
    info = fn.info  # type: ignore[attr-defined]
    formatter = argparse.RawDescriptionHelpFormatter if info.epilog else argparse.HelpFormatter
    p = sub.add_parser(name, parents=[common], help=info.help, description=info.help, epilog=info.epilog,
                       formatter_class=formatter)
    add_options(p, fn)


def parser() -> argparse.ArgumentParser:
    """The whole command line, generated from COMMANDS' signatures."""
    top = argparse.ArgumentParser(prog="thrifty", description="Fine-tune transformers (classification, NER, decoder "
                                                              "SFT, seq2seq), cheaply.")
    top.add_argument("--debug", action="store_true", help=DEBUG)
    top.add_argument("--quiet", action="store_true", help=QUIET)
    top.add_argument("--version", action="version", version=_version())
    common = argparse.ArgumentParser(add_help=False)  # so `thrifty train ... --debug` works as well
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET)
    sub = top.add_subparsers(dest="command", required=True)
    for name, target in COMMANDS.items():
        if isinstance(target, Family):
            family = sub.add_parser(name, parents=[common], help=target.help, description=target.help)
            inner = family.add_subparsers(dest=f"{name}_command", required=True)
            for inner_name, fn in target.commands.items():
                _subparser(inner, inner_name, fn, common)
        else:
            _subparser(sub, name, target, common)
    return top


def _version() -> str:
    from thrifty.version import __version__

    return f"thrifty {__version__}"


def command_of(args: argparse.Namespace) -> Callable[..., int]:
    target = COMMANDS[args.command]
    return target.commands[getattr(args, f"{args.command}_command")] if isinstance(target, Family) else target


def main(argv: Optional[list[str]] = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(argv)
    args = parser().parse_args(rest)
    from thrifty.console import session

    with session(quiet=args.quiet, debug=args.debug):  # progress on stderr only on a terminal; libraries quiet
        return _run(args, Context(overrides, argv, started))


def _run(args: argparse.Namespace, ctx: Context) -> int:
    """The command, with its errors as one line and an exit code (the traceback with --debug)."""
    fn = command_of(args)
    try:
        if ctx.overrides and not fn.info.config:  # type: ignore[attr-defined]
            with_config = ", ".join(f"`{name}`" for name, target in COMMANDS.items()
                                    if not isinstance(target, Family) and target.info.config)  # type: ignore[union-attr]
            raise ThriftyError(f"config overrides like {ctx.overrides[0]} only apply to the commands with a config: "
                               f"{with_config}")
        if fn.info.shows_passes:  # type: ignore[attr-defined]
            from thrifty.console import showing

            with showing():  # these commands' work is loops over passes: each shows its progress and ETA
                return call(fn, args, ctx)
        return call(fn, args, ctx)
    except ThriftyError as exc:
        if args.debug:
            raise
        prefix = "" if isinstance(exc, Interrupted) else "error: "
        print(f"thrifty: {prefix}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("thrifty: interrupted", file=sys.stderr)
        return 130
