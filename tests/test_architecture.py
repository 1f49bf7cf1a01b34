"""The package's shape: import layers (import-linter), no private names across packages (grimp), and the CLI's
light start (no torch for --help and --version)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept():
    """The layers contract in pyproject.toml: each package imports only from the layers below it."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", str(REPO / "pyproject.toml")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_private_names_imported_across_packages():
    import grimp

    graph = grimp.build_graph("thrifty")
    offending = []
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            top_a, top_b = importer.split(".")[:2], imported.split(".")[:2]
            if top_a == top_b:
                continue  # within one package, its private helpers are its own business
            for detail in graph.get_import_details(importer=importer, imported=imported):
                line = detail["line_contents"]
                names = line.split(" import ", 1)[1] if " import " in line else line
                private = [n.strip() for n in names.replace("(", "").replace(")", "").split(",")
                           if n.strip().split(" as ")[0].startswith("_") and not n.strip().startswith("__")]
                last = imported.rsplit(".", 1)[-1]
                if private or (last.startswith("_") and last != "__init__" and not last.startswith("__")):
                    offending.append(f"{importer}:{detail['line_number']}: {line}")
    assert offending == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["train", "--help"]])
def test_the_cli_starts_without_torch(args):
    code = ("import sys\nfrom thrifty.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')" % args)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "NO-TORCH", result.stdout + result.stderr


def test_import_thrifty_is_light():
    result = subprocess.run([sys.executable, "-c", "import sys, thrifty; print(thrifty.__version__, 'torch' in sys.modules)"],
                            capture_output=True, text=True, timeout=60)
    version, loaded = result.stdout.split()
    assert loaded == "False" and version.count(".") == 2


# ---- one place per idea: what the rest of the code knows of tasks and strategies, and how big its pieces are

SRC = REPO / "src" / "thrifty"
TASK_NAMES = {"classification", "token_classification", "masked_lm", "causal_lm", "seq2seq", "fewshot"}
STRATEGY_NAMES = {"full", "freeze", "head", "lora", "fewshot"}
# The packages that own the names: there a task or strategy may say what it is (traits.py lists them all, with no
# comparison needed).
NAME_OWNERS = ("tasks", "strategies")
LONGEST_FUNCTION = 100
LONGEST_CLI_MODULE = 250
# Functions allowed past LONGEST_FUNCTION, each with its reason. Empty: none is.
LONG_FUNCTION_EXCEPTIONS: dict[str, str] = {}


def _modules():
    import ast

    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC), ast.parse(path.read_text(encoding="utf-8"))


def _string_constants(node) -> list[str]:
    import ast

    found = []
    for part in [node.left, *node.comparators]:
        items = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
        found += [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return found


def name_comparisons() -> list[str]:
    """Comparisons (==, !=, in, not in) of a task or strategy name written as a string, outside the packages that
    own the names: each is a place that must change when a task or strategy is added."""
    import ast

    return [f"{rel}:{where}" for rel, tree in _modules() if rel.parts[0] not in NAME_OWNERS
            for where in _comparisons_in(tree)]


def _comparisons_in(tree) -> list[str]:
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = set(_string_constants(node))
            text = ast.unparse(node)
            if names & TASK_NAMES or (names & STRATEGY_NAMES and "strateg" in text):
                found.append(f"{node.lineno}: {text[:100]}")
    return found


def test_no_task_or_strategy_name_is_compared_outside_its_package():
    """The rest of the code asks a task's or a strategy's traits (thrifty/traits.py, Task members) instead."""
    assert name_comparisons() == []


def test_the_name_check_finds_a_comparison():
    """The check itself: `task == "seq2seq"` and `strategy.name in ("full", "lora")` are found; a metric or a
    backend compared by name is not a task's or strategy's name."""
    import ast

    code = ('def f(config, task, metric):\n'
            '    a = task == "seq2seq" or config.strategy.name in ("full", "lora")\n'
            '    return a or metric == "accuracy" or config.backend != "torch"\n')
    assert _comparisons_in(ast.parse(code)) == [
        "2: task == 'seq2seq'",
        "2: config.strategy.name in ('full', 'lora')"]


def test_no_function_is_longer_than_a_screenful_and_a_half():
    import ast

    long = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                where = f"{rel}:{node.name}"
                if lines > LONGEST_FUNCTION and where not in LONG_FUNCTION_EXCEPTIONS:
                    long.append(f"{where} ({lines} lines)")
    assert long == []


def test_each_command_line_module_is_small():
    sizes = {str(p.relative_to(SRC)): p.read_text(encoding="utf-8").count("\n") for p in (SRC / "cli").rglob("*.py")}
    assert sizes and not (SRC / "cli.py").exists()
    assert {name: n for name, n in sizes.items() if n > LONGEST_CLI_MODULE} == {}


def test_training_keeps_no_module_level_mutable_state():
    """A run's state belongs to the run: no dict, list or set assigned at module level in training/ (constants are
    tuples, frozensets or names in capitals bound to immutable values)."""
    import ast

    mutable = []
    for rel, tree in _modules():
        if rel.parts[0] != "training":
            continue
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value
                if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
                        isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set")):
                    mutable.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert mutable == []
