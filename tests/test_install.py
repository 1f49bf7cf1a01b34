"""The install is reproducible: scripts/setup.sh installs exactly the versions in constraints.txt (the ones the suite
passed with), and the environment the tests run in is that one."""

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    found = [re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line) for line in lines if line and not line.startswith("#")]
    assert all(found), [line for line, m in zip(lines, found) if not m]
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in found}


@pytest.mark.skipif(os.environ.get("THRIFTY_UNPINNED") == "1",
                    reason="scripts/check_latest.sh tries the newest versions, not the pins")
def test_every_dependency_is_pinned_and_installed_at_its_pin():
    pinned = pins()
    for core in ("transformers", "torch", "peft", "accelerate", "fastapi", "optuna", "mlflow", "pytest", "pip"):
        assert core in pinned, f"{core} is not pinned in constraints.txt"
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pinned.items()
             if installed.get(name, "").split("+")[0] != version}
    assert not wrong, f"installed versions differ from constraints.txt (pinned, installed): {wrong}; run scripts/setup.sh"


def test_setup_installs_from_the_pins():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    installs = [line for line in setup.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all("-c constraints.txt" in line or "==" in line for line in installs), installs
    assert "pip install" not in (REPO / ".ci" / "run").read_text()  # CI installs through setup.sh, nothing of its own
