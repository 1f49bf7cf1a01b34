"""The machinery: a typed function's signature becomes its argparse subparser (thrifty/cli/command.py)."""

import argparse
import ast
from pathlib import Path
from typing import Annotated, Literal, Optional

import pytest

from thrifty.cli.command import BARE, Arg, Context, Option, add_options, call, command, parameters

CLI = Path(__file__).resolve().parents[2] / "src" / "thrifty" / "cli"


@command("an example", config=True)
def example(
    source: Annotated[Optional[str], Arg("where from", metavar="SRC")] = None,
    *,
    count: Annotated[int, Option("how many")] = 3,
    rate: Annotated[Optional[float], Option("how fast")] = None,
    tag: Annotated[Optional[list[str]], Option("a tag (repeatable)", group="what", required=True)] = None,
    text: Annotated[Optional[str], Option("a text", group="what")] = None,
    mode: Annotated[Literal["a", "b"], Option("the mode")] = "a",
    as_json: Annotated[bool, Option("print JSON", flag="--json")] = False,
    chat: Annotated[Optional[bool], Option("chat or not")] = None,
    resume: Annotated[Optional[str], Option("a folder", bare=True)] = None,
    no_progress: Annotated[bool, Option("no bar")] = False,
    ctx: Context,
) -> int:
    return {"source": source, "count": count, "rate": rate, "tag": tag, "text": text, "mode": mode, "json": as_json,
            "chat": chat, "resume": resume, "no_progress": no_progress, "ctx": ctx}  # type: ignore[return-value]


def parse(*argv):
    parser = argparse.ArgumentParser(prog="example", exit_on_error=False)
    add_options(parser, example)
    return parser, parser.parse_args(list(argv))


def test_types_defaults_and_spellings_come_from_the_signature():
    _, args = parse("in.txt", "--count", "5", "--rate", "0.5", "--tag", "x", "--tag", "y", "--mode", "b", "--json",
                    "--no-chat", "--resume", "runs/a")
    assert (args.source, args.count, args.rate, args.tag, args.mode) == ("in.txt", 5, 0.5, ["x", "y"], "b")
    assert args.as_json is True and args.chat is False and args.resume == "runs/a"
    _, args = parse("--text", "hello")
    assert (args.source, args.count, args.rate, args.tag, args.mode, args.as_json, args.chat) == \
        (None, 3, None, None, "a", False, None)


def test_a_bare_option_and_the_group_rules():
    _, args = parse("--text", "t", "--resume")
    assert args.resume == BARE
    for argv in (["--mode", "c", "--text", "t"], ["--count", "many", "--text", "t"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parse(*argv)
    with pytest.raises(SystemExit):  # one of --tag/--text is required, and not both
        parse("--count", "1")
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse("--tag", "x", "--text", "t")


def test_help_has_every_option_with_its_default():
    parser, _ = parse("--text", "t")
    text = " ".join(parser.format_help().split())
    for flag, words in (("--count", "how many (default: 3)"), ("--json", "print JSON"), ("--chat, --no-chat", "chat"),
                        ("--mode {a,b}", "the mode (default: a)"), ("SRC", "where from")):
        assert flag in text and words in text, (flag, text)


def test_call_passes_the_options_the_context_and_quiet():
    _, args = parse("--text", "t")
    args.quiet = True
    ctx = Context(["--train.epochs", "1"], ["x"], 0.0)
    got = call(example, args, ctx)
    assert got["ctx"] is ctx and got["no_progress"] is True and got["text"] == "t"  # type: ignore[index]
    assert example.info.config and [p[0] for p in parameters(example)][:2] == ["source", "count"]


def test_an_option_without_help_is_refused():
    def bare(*, count: int = 1) -> int:
        return count

    with pytest.raises(TypeError, match="Option"):
        parameters(bare)


def test_the_cli_modules_stay_small():
    """Every CLI module at most 250 lines, no function over 100."""
    for path in sorted(CLI.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= 250, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                assert length <= 100, f"{path.name}: {node.name} has {length} lines"
