"""The README stays true: every tour command runs, and the test command is what CI runs."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def tour_blocks() -> list[list[str]]:
    section = README.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    return [[line.strip() for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def tour_commands() -> list[str]:
    return [line for block in tour_blocks() for line in block if line.startswith("thrifty ")]


def is_server_block(block: list[str]) -> bool:
    return any(line.startswith("thrifty serve ") for line in block)


def two_commands() -> list[str]:
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in re.findall(r"```text\n(.*?)```", section, flags=re.S)]


def test_the_test_command_is_what_ci_runs():
    setup_and_run, setup_and_test = two_commands()
    assert setup_and_run.startswith("bash scripts/setup.sh && .venv/bin/thrifty train")
    ci = (REPO / ".ci" / "run").read_text()
    assert setup_and_test in ci


def test_tour_has_the_main_commands():
    verbs = {shlex.split(c)[1] for c in tour_commands()}
    assert {"train", "adapt", "zeroshot", "predict", "evaluate", "config", "estimate", "tune", "recommend", "models",
            "hardware", "serve", "registry", "retrain", "audit", "generate"} <= verbs


@pytest.mark.slow
def test_every_tour_command_runs(tmp_path):
    if not (SHARED / "sst2").exists():
        pytest.skip("../shared/data is needed by the tour")
    # A sandbox that looks like the repository root, so runs/ is created there and not in the checkout.
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("examples", "src"):
        (root / name).symlink_to(REPO / name)
    (tmp_path / "shared").symlink_to(SHARED.parent)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    server_blocks = []
    for block in tour_blocks():  # in the README's order
        if is_server_block(block):
            server_blocks.append(run_server_block(root, env, block))  # the lines as written, a server in between
            continue
        for command in (line for line in block if line.startswith("thrifty ")):
            args = shlex.split(command)[1:]
            if args[0] in ("train", "tune", "adapt"):
                # (N processes split the cores themselves)
                args += ["--no-progress"] + ([] if "--processes" in args else ["--train.num_threads", "2"])
            result = subprocess.run([sys.executable, "-m", "thrifty", *args], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    assert (root / "runs" / "quickstart" / "metrics.json").exists()
    lines = (root / "runs" / "quickstart-predictions.jsonl").read_text().splitlines()
    assert len(lines) == len((REPO / "examples" / "questions.txt").read_text().splitlines())
    assert (root / "runs" / "sst2-small" / "evaluations" / "stsa.binary.test" / "confusion_matrix.png").exists()
    # each step shows the tool working, not only running: the models learned (measured: quickstart 0.88 validation
    # accuracy, SST-2 on 1,000 sentences 0.82 dev accuracy, CoNLL on 1,000 sentences 0.61 test F1)
    assert json.loads((root / "runs" / "quickstart" / "metrics.json").read_text())["validation"]["accuracy"] > 0.6
    sst2 = json.loads((root / "runs" / "sst2-small" / "evaluations" / "stsa.binary.test" / "metrics.json").read_text())
    assert sst2["accuracy"] > 0.7
    ner = root / "runs" / "conll-small" / "evaluations" / "test.txt"
    assert (ner / "per_type_f1.png").exists() and json.loads((ner / "metrics.json").read_text())["f1"] > 0.3
    fewshot = json.loads((root / "runs" / "fewshot" / "metrics.json").read_text())
    assert fewshot["model"]["strategy"] == "fewshot" and fewshot["validation"]["accuracy"] > 0.6  # 16 sentences
    assert json.loads((root / "runs" / "sst2-tapt" / "model" / "thrifty.json").read_text())["task"] == "masked_lm"
    after = json.loads((root / "runs" / "fewshot-after-tapt" / "model" / "thrifty.json").read_text())
    assert after["base_model"]["path"].endswith("sst2-tapt/model")  # the adapted encoder was the base
    zeroshot = json.loads((root / "runs" / "zeroshot" / "evaluations" / "stsa.binary.test" / "metrics.json").read_text())
    assert zeroshot["accuracy"] > 0.6  # label names alone; measured 0.660 on SST-2's test set
    audited = json.loads(next((root / "runs" / "sst2-small" / "audit").glob("*/audit.json")).read_text())
    assert audited["summary"]["counterfactual_sentences"] == 3360 and audited["summary"]["max_gap"] is not None
    pretrained = json.loads(next((root / "runs" / "audit").glob("all-MiniLM-L6-v2-*/audit.json")).read_text())
    assert len(pretrained["association"]["tests"]) == 3

    sft = json.loads((root / "runs" / "sft-small" / "metrics.json").read_text())  # SmolLM2, LoRA, 64 prompts
    assert sft["model"]["task"] == "causal_lm" and sft["validation"]["asked"] == 24  # answers within a quarter of
    assert 16 <= sft["validation"]["generated"] <= 24  # the run: a batch (16) at least, all 24 if the time allows
    answers = [json.loads(line) for line in (root / "runs" / "sft-small-answers.jsonl").read_text().splitlines()]
    assert len(answers) == 6 and all(isinstance(a["generated"], str) for a in answers)

    serving, registered = server_blocks
    # serve a run folder (ONNX), feedback, the log, the monitor
    answer = json.loads(serving["predict"])
    assert len(answer["predictions"]) == 2 and answer["model"]["backend"] == "onnx"
    assert json.loads(serving["feedback"]) == {"id": answer["predictions"][0]["id"], "label": "card_arrival"}
    rows = [row.split("|") for row in serving["sqlite3"].strip().splitlines()]
    assert len(rows) == 2 and [r[2] for r in rows].count("card_arrival") == 1
    assert (root / "runs" / "quickstart" / "model" / "onnx" / "parity.json").exists()
    assert "2 predictions" in serving["monitor"] and "no drift flagged" in serving["monitor"]

    # the registry: serve the champion from it, versions, an alias that moves and comes back, a retrain
    answer = json.loads(registered["predict"])
    assert answer["model"]["name"] == "banking" and answer["model"]["version"] == "1"
    assert (root / "runs" / "serve" / "banking" / "predictions.db").exists()  # the registry model's own log
    from thrifty.registry.store import Registry

    registry = Registry(f"sqlite:///{root / 'runs' / 'mlflow.db'}")  # the default store, where the tour put it
    assert registry.get("banking", 2).parent_version == 1  # warm-started from the quickstart model
    assert "back to the first model" in [m.reason for m in registry.history("banking")]  # 1, then 2, then back to 1
    challenger = registry.resolve("banking", "challenger")  # retrain: the champion (1) against new data
    decision = json.loads(challenger.tags["thrifty.retrain.decision"])
    assert challenger.version == 3 and challenger.parent_version == 1 and decision["reasons"]
    assert registry.resolve("banking").version == (3 if decision["promote"] else 1)
    assert len(list((root / "runs" / "retrain").glob("banking-*/retrain.json"))) == 1


def run_server_block(root: Path, env: dict, block: list[str]) -> dict[str, str]:
    """A README block with a server, its lines as written, in order: thrifty commands, the server in the background
    (`&`), curl, sqlite3, `kill %1` (SIGTERM). Only the port differs (a free one instead of 8000, which may be in
    use). Returns each line's output by verb (thrifty's subcommand, curl's endpoint, the program)."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    server, prediction_id, outputs = None, None, {}
    try:
        for line in block:
            line = line.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if line.startswith("thrifty serve ") and line.endswith("&"):
                args = shlex.split(line[:-1])[1:] + ["--port", port, "--serve.threads", "2"]
                server = subprocess.Popen([sys.executable, "-m", "thrifty", *args], cwd=root, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                deadline = time.monotonic() + 120
                while subprocess.run(["curl", "-sf", f"127.0.0.1:{port}/readyz"], capture_output=True).returncode:
                    assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                    time.sleep(0.2)
                continue
            if line == "kill %1":
                server.send_signal(signal.SIGTERM)
                assert server.wait(60) == 0, server.stdout.read()
                continue
            if line.startswith("thrifty "):
                args = shlex.split(line)[1:]
                if args[0] in ("train", "tune", "adapt"):
                    args += ["--no-progress", "--train.num_threads", "2"]
                command = [sys.executable, "-m", "thrifty", *args]
            else:
                command = ["bash", "-c", line.replace("PREDICTION_ID", prediction_id or "PREDICTION_ID")]
            result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            verb = shlex.split(line)[1] if line.startswith("thrifty ") else line.split()[0]
            outputs[verb if "/v1/" not in line else line.split("/v1/")[1].split()[0]] = result.stdout
            if prediction_id is None and "/v1/predict" in line:
                prediction_id = json.loads(result.stdout)["predictions"][0]["id"]
    finally:
        if server is not None and server.poll() is None:
            server.kill()
    return outputs


def docs_commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted((REPO / "docs").glob("*.md")):
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            for line in (line.strip() for line in block.splitlines()):
                if line.startswith("thrifty "):
                    found.append((page.name, line))
                elif " -m thrifty " in line:  # under a launcher (torchrun, accelerate launch): its thrifty part
                    found.append((page.name, "thrifty " + line.split(" -m thrifty ", 1)[1]))
    return found


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.encode()) < 25_000
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in README, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page,command", docs_commands())
def test_docs_commands_parse(page, command):
    """Every command shown in docs/ is accepted by the CLI as written: its verb, flags and config keys exist.
    (The tour above runs its commands; these are checked without training.)"""
    from thrifty.cli import parser, split_overrides
    from thrifty.config import load_config

    rest, overrides = split_overrides(shlex.split(command)[1:])
    args = parser().parse_args(rest)
    config = getattr(args, "config", None)
    if overrides or (config and config.endswith(".yaml")):
        load_config(REPO / config if config and (REPO / config).exists() else None, overrides)


def test_readme_and_docs_speak_to_users():
    """What works, how well, where the evidence is: no internal issue numbers or status notes."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [f"{page.name}: {line.strip()[:80]}" for page in pages
             for line in page.read_text(encoding="utf-8").splitlines() if re.search(r"\b[Ii]ssues? \d+", line)]
    assert found == []


def _blocks_with_ratios() -> list[tuple[str, list[str]]]:
    """Each paragraph or table row of the README with a ratio in bold (**1.29x**): (the block, its ratios)."""
    blocks = [b for part in README.split("\n\n") for b in (part.splitlines() if part.lstrip().startswith("|") else [part])]
    return [(b, re.findall(r"\*\*(\d+(?:\.\d+)?)x\*\*", b)) for b in blocks if re.search(r"\*\*\d+(?:\.\d+)?x\*\*", b)]


def test_every_ratio_the_readme_shows_has_a_committed_results_file_behind_it():
    """A ratio in bold in the README (a headline) links the benchmarks/results/*.md table it comes from, in the same
    paragraph or table row, and that committed table shows the same ratio: no headline without its evidence."""
    blocks = _blocks_with_ratios()
    assert blocks, "the README shows no ratio at all: this test would check nothing"
    for block, ratios in blocks:
        linked = re.findall(r"\((?:\.\./)?(benchmarks/results/[\w.-]+\.md)\)", block)
        assert linked, f"a ratio without its results file: {block[:120]!r}"
        tables = "".join((REPO / path).read_text(encoding="utf-8") for path in linked if (REPO / path).exists())
        assert tables, f"{linked} do not exist: {block[:120]!r}"
        for ratio in ratios:
            assert f"{ratio}x" in tables, f"**{ratio}x** is not in {linked}"
