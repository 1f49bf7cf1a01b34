"""The CLI's machinery: a command is one typed function, and its argparse subparser is generated from its signature.

    @command(help="labels for new texts", config=False)
    def predict(model_dir: Annotated[str, Arg(help="the model folder", metavar="MODEL_DIR")], *,
                batch_size: Annotated[int, Option(help="texts per forward pass")] = 128) -> int: ...

Every parameter is `Annotated[TYPE, Option(...)]` (or `Arg(...)`, a positional) with its help text; the type gives
argparse's type (Optional[X]: X, default None; list[X]: repeatable; Literal[...]: choices; bool: a flag, or
--x/--no-x when its default is None). A parameter named `ctx` gets the `Context` (overrides, argv, start time).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

BARE = "\0bare"  # the value of an option given without one (`nargs="?"`): an old flag spelling of it


@dataclass(frozen=True)
class Option:
    """One option (or positional) of a command: its help text and what the type does not say."""

    help: str
    metavar: Optional[str] = None
    choices: Optional[tuple] = None
    flag: Optional[str] = None  # the spelling, when not --the-parameter-name
    group: Optional[str] = None  # mutually exclusive with the other options of this group
    required: bool = False  # the option (or one of its group) must be given
    bare: bool = False  # may be given without a value: the value is then BARE (a deprecated flag spelling)
    positional: bool = False


def Arg(help: str, metavar: Optional[str] = None) -> Option:  # noqa: N802  (reads as a kind of Option)
    """A positional argument: optional when the parameter has a default."""
    return Option(help=help, metavar=metavar, positional=True)


@dataclass(frozen=True)
class Info:
    help: str
    epilog: Optional[str] = None
    config: bool = False  # takes --section.key VALUE overrides
    shows_passes: bool = False  # prediction/evaluation loops: each pass shows its progress


@dataclass(frozen=True)
class Family:
    """Commands under one name (`thrifty registry list`)."""

    help: str
    commands: dict[str, Callable[..., int]]


@dataclass
class Context:
    overrides: list[str]  # --section.key VALUE pairs, for commands with a config
    argv: list[str]  # the whole command line after `thrifty`
    started: float  # time.perf_counter() at start: budgets count the imports too


def command(help: str, *, epilog: Optional[str] = None, config: bool = False,
            shows_passes: bool = False) -> Callable[[Callable[..., int]], Callable[..., int]]:
    def mark(fn: Callable[..., int]) -> Callable[..., int]:
        fn.info = Info(help, epilog, config, shows_passes)  # type: ignore[attr-defined]
        return fn

    return mark


def deprecated(old: str, new: str) -> None:
    """The one-line notice for an old spelling that still works for one release."""
    print(f"thrifty: deprecated: {old} is now {new} (the old spelling goes in the next release)", file=sys.stderr)


FILE_SUFFIXES = {".jsonl": (".jsonl", ".csv"), ".yaml": (".yaml", ".yml")}  # what the old --output FILE could end in


def file_or_folder(output: Optional[str], output_file: Optional[str], name: str) -> Optional[Path]:
    """Where a command that writes one file writes it: --output-file FILE, or --output FOLDER (FOLDER/name); the old
    --output FILE (a name ending in a suffix of the file the command writes, e.g. .jsonl or .csv for predict, that is
    no folder) still works, with the notice. Any other name is a folder, dots and all (runs/v1.2)."""
    from thrifty.errors import ThriftyError

    if output is not None and output_file is not None:
        raise ThriftyError("give --output FOLDER or --output-file FILE, not both")
    if output_file is not None:
        return Path(output_file)
    if output is None:
        return None
    path = Path(output)
    if path.suffix.lower() in FILE_SUFFIXES.get(Path(name).suffix, (Path(name).suffix,)) and not path.is_dir():
        deprecated(f"--output {output} (a file)", f"--output-file {output}")
        return path
    return path / name


def _plain(hint: Any) -> tuple[Any, bool]:
    """Optional[X] -> (X, True); X -> (X, False)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _argument(name: str, kind: Any, opt: Option, default: Any) -> tuple[list[str], dict[str, Any]]:
    """argparse's add_argument(*names, **kwargs) for one parameter."""
    help_text = opt.help
    shown = not any(default is v for v in (None, False, "", inspect.Parameter.empty))
    if shown and "default" not in help_text:
        help_text += f" (default: {default})"
    kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%")}
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.positional:
        if default is not inspect.Parameter.empty:
            kwargs.update(nargs="?", default=default)
        return [name], {**kwargs, "type": kind if kind in (int, float) else None}
    names = [opt.flag or "--" + name.replace("_", "-")]
    kwargs.update(dest=name, default=default)
    if opt.required and opt.group is None:
        kwargs["required"] = True
    if typing.get_origin(kind) is list:
        kind = typing.get_args(kind)[0]
        kwargs["action"] = "append"
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default is None else "store_true"
        return names, kwargs
    if typing.get_origin(kind) is Literal:
        kwargs["choices"] = typing.get_args(kind)
        kind = type(typing.get_args(kind)[0])
    if opt.choices:
        kwargs["choices"] = opt.choices
    if opt.bare:
        kwargs.update(nargs="?", const=BARE)
    if kind in (int, float):
        kwargs["type"] = kind
    return names, kwargs


def parameters(fn: Callable[..., int]) -> list[tuple[str, Any, Option, Any]]:
    """(name, type, Option, default) of each option of `fn`, `ctx` left out; a parameter without help is a bug."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out = []
    for name, param in inspect.signature(fn).parameters.items():
        if name == "ctx":
            continue
        hint = hints.get(name)
        if typing.get_origin(hint) is not Annotated or not isinstance(hint.__metadata__[0], Option):
            raise TypeError(f"{fn.__name__}({name}): every option is Annotated[TYPE, Option(help=...)]")
        kind, _ = _plain(typing.get_args(hint)[0])
        out.append((name, kind, hint.__metadata__[0], param.default))
    return out


def add_options(parser: argparse.ArgumentParser, fn: Callable[..., int]) -> None:
    """The arguments of `fn`'s signature, on its subparser."""
    specs = parameters(fn)
    groups: dict[str, Any] = {}
    for name, kind, opt, default in specs:
        target: Any = parser
        if opt.group is not None:
            if opt.group not in groups:
                required = any(o.required for _, _, o, _ in specs if o.group == opt.group)
                groups[opt.group] = parser.add_mutually_exclusive_group(required=required)
            target = groups[opt.group]
        names, kwargs = _argument(name, kind, opt, default)
        target.add_argument(*names, **kwargs)


def call(fn: Callable[..., int], args: argparse.Namespace, ctx: Context) -> int:
    """`fn` with its options from the parsed `args`."""
    kwargs = {name: getattr(args, name) for name, _, _, _ in parameters(fn)}
    if getattr(args, "quiet", False) and "no_progress" in kwargs:
        kwargs["no_progress"] = True
    if "ctx" in inspect.signature(fn).parameters:
        kwargs["ctx"] = ctx
    return fn(**kwargs)
