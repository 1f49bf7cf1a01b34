"""Shared by the benchmark scripts: paths, the machine a result was measured on, SST-2 files, result files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = (REPO / ".." / "shared" / "data" / "sst2").resolve()
RESULTS = REPO / "benchmarks" / "results"


def machine(threads: int) -> dict:
    """CPU model, cores, threads used and library versions: recorded with every result."""
    import torch
    import transformers

    from thrifty.cost.calibration_cache import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def read_sst2(name: str) -> tuple[list[str], list[int]]:
    """Texts and integer labels of one SST-2 file ('label text' lines)."""
    rows = [line.partition(" ") for line in (SST2 / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r[2] for r in rows], [int(r[0]) for r in rows]


def write_results(stem: str, data: dict, markdown: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


class WorkerFailed(RuntimeError):
    """A benchmark worker process ended without printing its RESULT line."""


def run_worker(script: str, args: list[str], threads: int) -> dict:
    """Run `script --worker ...` in a fresh process with `threads` threads; its `RESULT {json}` line, parsed."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, script, *args, "--threads", str(threads)], capture_output=True, text=True,
                         env=env, cwd=REPO)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise WorkerFailed((out.stderr.strip().splitlines() or ["no output"])[-1][:300] + "\n" + out.stderr[-3000:])
    return json.loads(line[len("RESULT "):])
