"""Data-parallel training on this machine: 2 processes x 1 thread against 1 process x 2 threads, and what the estimate
predicted for each. SST-2, all-MiniLM-L6-v2.

    python benchmarks/distributed_speedup.py --seeds 0,1,2      # 3 rounds x 2 systems, ~8 min on 2 cores

Both sides run `thrifty train` in a fresh process on the same rows and recipe: a seeded sample of 2,000 SST-2
training sentences (the same file every round), validation on the published dev split (872), `examples/sst2.yaml`
(full fine-tuning, lr 1e-4, batch 32 over all processes) for 1 epoch, dropout as the model ships it, the test set left
out. What differs by design is how the 2 cores are used:

- 1x2: `thrifty train` with 2 torch threads in one process;
- 2x1: `thrifty train --processes 2`, 1 thread in each process, DDP over gloo: every step each process computes 16 of
  the batch's 32 sentences and the two add up their gradients (91 MB) before the optimizer step.

Reported: the loop's wall clock (first step to the end of the loop: steps, the evaluation, checkpoints), real tokens
per second, dev accuracy, and the seconds `thrifty estimate --processes N` predicted for the same run (its calibration:
a few timed steps of one process's share with that process's threads; the gradient exchange: 2(N-1)/N x the
gradient bytes at the gloo rate measured here). The order of the two sides alternates by round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SST2, compare, paired_ratios, spread, sst2_sample_file, table_head  # noqa: E402

SYSTEMS = ("1x2", "2x1")
TRAIN_ROWS = 2000


def _thrifty(args: list[str], threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "thrifty", *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    processes = int(system[0])
    threads = args.threads // processes
    with tempfile.TemporaryDirectory() as tmp:
        data = sst2_sample_file(TRAIN_ROWS, Path(tmp))
        overrides = ["--data.train", str(data), "--data.validation", str(SST2 / "stsa.binary.dev"), "--data.test", "null",
                     "--train.epochs", "1", "--train.seed", str(seed), "--train.num_threads", str(threads),
                     "--tracking.tensorboard", "false", "--tracking.energy", "false"]
        config = str(REPO / "examples" / "sst2.yaml")
        predicted = json.loads(_thrifty(["estimate", config, "--json", "--processes", str(processes), *overrides],
                                        threads).stdout)
        _thrifty(["train", config, "--output", str(Path(tmp) / "run"), "--processes", str(processes), *overrides], threads)
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    train = metrics["train"]
    return {"processes": processes, "threads_per_process": threads, "loop_wall_seconds": train["loop_wall_seconds"],
            "tokens_per_second": train["tokens_per_second"], "steps": train["steps"], "tokens": train["tokens"],
            "dev_accuracy": metrics["validation"]["accuracy"], "predicted_seconds": predicted["predicted_seconds"],
            "predicted_training_seconds": predicted["predicted"]["training_seconds"],
            "predicted_communication_seconds_per_step": predicted["communication_seconds_per_step"],
            "calibration": predicted["calibration"]}


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    runs = saved["runs"]
    lines = table_head("Data-parallel training on this machine: 2 processes x 1 thread vs 1 process x 2 threads",
                       "python benchmarks/distributed_speedup.py --seeds 0,1,2", saved,
                       f"SST-2, {TRAIN_ROWS:,} training sentences (seeded sample), dev 872, all-MiniLM-L6-v2 full "
                       "fine-tuning, batch 32 over all processes, 1 epoch; median (min-max) over rounds, each side "
                       "a fresh `thrifty train` process, order alternated by round.",
                       ["system", "rounds", "loop wall s", "real tokens/s", "dev accuracy", "predicted s (estimate)",
                        "gradient exchange, predicted ms/step"])
    for system in SYSTEMS:
        rs = [r for r in runs if r["system"] == system]
        if not rs:
            continue
        lines.append(f"| {system} | {len(rs)} | {spread([r['loop_wall_seconds'] for r in rs], '{:.1f}')} | "
                     f"{spread([r['tokens_per_second'] for r in rs])} | {spread([r['dev_accuracy'] for r in rs], '{:.4f}')} | "
                     f"{spread([r['predicted_seconds'] for r in rs], '{:.1f}')} | "
                     f"{spread([r['predicted_communication_seconds_per_step'] * 1000 for r in rs], '{:.0f}')} |")
    measured = paired_ratios(runs, "1x2", "2x1", lambda r: r["loop_wall_seconds"])
    predicted = paired_ratios(runs, "1x2", "2x1", lambda r: r["predicted_seconds"])
    if measured:
        lines.append(f"\nspeed-up of 2x1 over 1x2 (loop wall clock 1x2 / 2x1): measured {statistics.median(measured):.2f}x "
                     f"(round by round {', '.join(f'{x:.2f}x' for x in measured)}); the estimate predicted "
                     f"{statistics.median(predicted):.2f}x ({', '.join(f'{x:.2f}x' for x in predicted)}).")
        lines.append("A value below 1 means two processes are slower than one process with both threads on this machine.")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare(__file__, "distributed_speedup", SYSTEMS, run_system, summarise, parser,
            {"train_rows": TRAIN_ROWS, "epochs": 1, "batch_size": 32, "model": "all-MiniLM-L6-v2", "strategy": "full"})
