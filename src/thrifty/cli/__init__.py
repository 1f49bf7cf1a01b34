"""The `thrifty` command line: train, adapt, zeroshot, evaluate, predict, generate, serve, migrate, export, monitor,
audit, registry, retrain, estimate, tune, recommend, models, hardware, config (docs/cli.md).

Each command is one typed function in its own module (cli/train.py, cli/predict.py, ...); its options are its
signature, and cli/command.py generates the argparse subparser from it. cli/app.py holds the dispatch table and main.
Bad input ends with exit code 2 and one line on stderr naming the problem and the fix; ``--debug`` shows the
traceback instead. Ctrl-C during training stops at a step boundary with a resumable checkpoint (exit code 130).
"""

from __future__ import annotations

from thrifty.cli.app import COMMANDS, main, parser, split_overrides

__all__ = ["COMMANDS", "main", "parser", "split_overrides"]
