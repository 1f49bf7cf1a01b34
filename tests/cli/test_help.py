"""Every command's --help names every option with its help text; every command is one typed function."""

import pytest

from thrifty.cli import COMMANDS, main
from thrifty.cli.command import Family, parameters


def all_commands():
    for name, target in COMMANDS.items():
        if isinstance(target, Family):
            yield from (([name, inner], fn) for inner, fn in target.commands.items())
        else:
            yield [name], target


@pytest.mark.parametrize("words,fn", list(all_commands()), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_help_shows_every_option_and_its_help(words, fn, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert fn.info.help.split(" (")[0] in shown
    for name, _, option, _ in parameters(fn):
        assert option.help.strip(), f"{' '.join(words)} {name} has no help text"
        if not option.positional:
            assert (option.flag or "--" + name.replace("_", "-")) in shown
        assert " ".join(option.help.split())[:60] in shown, f"{' '.join(words)}: help of {name} not shown"


def test_the_dispatch_table_covers_every_command(capsys):
    assert len(list(all_commands())) == 23  # 18 commands and registry's 5
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in COMMANDS)


def test_docs_cli_lists_every_command_and_option():
    """docs/cli.md's table has a row per command naming each of its options (a deprecated one in its own table)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    deprecations = page.split("## Deprecated spellings", 1)[1]
    for words, fn in all_commands():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{' '.join(words)}")), None)
        assert row is not None, f"docs/cli.md has no row for {' '.join(words)}"
        for name, _, option, _ in parameters(fn):
            if option.positional:
                continue
            flag = option.flag or "--" + name.replace("_", "-")
            where = deprecations if option.help.startswith("deprecated") else row
            assert f"`{flag}" in where, f"docs/cli.md: {' '.join(words)} {flag}"
