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
