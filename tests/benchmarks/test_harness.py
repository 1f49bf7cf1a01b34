"""The benchmark harness (benchmarks/common.py): fresh processes, alternated order, appended runs, summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

TOY = f'''
import argparse, os, sys
sys.path.insert(0, {str(BENCHMARKS)!r})
from common import compare, spread

def run_system(system, seed, args):
    return {{"pid": os.getpid(), "value": seed * 10 + len(system)}}

def summarise(saved, args):
    return ["runs " + " ".join(f"{{r['system']}}{{r['seed']}}" for r in saved["runs"]),
            "a " + spread([r["value"] for r in saved["runs"] if r["system"] == "a"])]

compare(__file__, "toy", ("a", "bb"), run_system, summarise, argparse.ArgumentParser(), settings={{"k": 1}})
'''


def _run(script: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "THRIFTY_BENCHMARK_RESULTS": str(results)}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "toy.py"
    script.write_text(TOY)
    return script, tmp_path / "results"


@pytest.mark.slow  # four real worker processes: about 20 s
def test_every_run_is_a_fresh_process_in_alternated_order_appended_across_invocations(toy):
    script, results = toy
    first = _run(script, results, "--seeds", "1,2")
    assert first.returncode == 0, first.stderr
    second = _run(script, results, "--seeds", "3")
    assert second.returncode == 0, second.stderr
    saved = json.loads((results / "toy.json").read_text())
    # seed 1: a then bb; seed 2: bb then a; the next invocation goes on with the third seed's order
    assert [(r["system"], r["seed"]) for r in saved["runs"]] == [("a", 1), ("bb", 1), ("bb", 2), ("a", 2), ("a", 3), ("bb", 3)]
    assert len({r["pid"] for r in saved["runs"]}) == 6  # each run its own process
    assert saved["settings"] == {"k": 1} and saved["machine"]["threads"] == 2
    assert all(r["process_wall_seconds"] > 0 for r in saved["runs"])
    markdown = (results / "toy.md").read_text().splitlines()
    assert markdown == ["runs a1 bb1 bb2 a2 a3 bb3", "a 21 (11-31)"]


def test_summary_only_runs_nothing_and_an_unknown_system_is_refused(toy):
    script, results = toy
    assert _run(script, results, "--seeds", "1", "--systems", "a").returncode == 0
    again = _run(script, results, "--summary-only")
    assert again.returncode == 0
    assert len(json.loads((results / "toy.json").read_text())["runs"]) == 1
    refused = _run(script, results, "--systems", "a,c")
    assert refused.returncode != 0 and "unknown system(s) c" in refused.stderr


def _harness_commands() -> list[str]:
    """The `python benchmarks/<script>.py ...` commands of docs/performance.md whose script runs on the harness."""
    import re

    text = (BENCHMARKS.parent / "docs" / "performance.md").read_text()
    commands = sorted(set(re.findall(r"`(python benchmarks/\w+\.py[^`]*)`", text)))
    return [c for c in commands if "compare(" in (BENCHMARKS.parent / c.split()[1]).read_text()]


def test_performance_page_lists_the_harness_comparisons():
    scripts = {c.split()[1] for c in _harness_commands()}
    assert scripts == {f"benchmarks/{name}.py" for name in
                       ("train_throughput", "time_to_accuracy", "frozen_cache", "inference", "ner_vs_trainer",
                        "bf16_accuracy", "sft_vs_trl", "serve_load")}


@pytest.mark.parametrize("command", _harness_commands())
def test_each_table_is_regenerated_from_its_committed_runs(command, tmp_path):
    # A second reader gets the committed table from the committed runs: the command, with --summary-only, writes the
    # very same .md (into a copy of the results folder).
    import shutil

    results = tmp_path / "results"
    shutil.copytree(BENCHMARKS / "results", results)
    script, *args = command.split()[1:]
    done = _run(BENCHMARKS.parent / script, results, *args, "--summary-only")
    assert done.returncode == 0, done.stderr
    for md in results.glob("*.md"):
        assert md.read_text() == (BENCHMARKS / "results" / md.name).read_text(), f"{command} changed {md.name}"
