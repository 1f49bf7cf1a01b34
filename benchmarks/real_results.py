"""Real results on the published splits: train the example configs and record what they reach.

    python benchmarks/real_results.py                 # trains examples/sst2.yaml and examples/banking77.yaml
    python benchmarks/real_results.py --collect-only  # re-reads finished runs in benchmarks/runs/

Writes benchmarks/results/real_results.json and .md with the machine (CPU model, cores, torch version).
Each run uses the example config as shipped; the command that made it is recorded beside its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import REPO, machine, write_results

RUNS = REPO / "benchmarks" / "runs"
EXPERIMENTS = {
    "sst2-full": ["examples/sst2.yaml"],
    "banking77-full": ["examples/banking77.yaml"],
}


def run(name: str, args: list[str], threads: int) -> None:
    command = [sys.executable, "-m", "thrifty", "train", *args, "--output", str(RUNS / name), "--overwrite",
               "--no-progress", "--train.num_threads", str(threads)]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=sorted(EXPERIMENTS), action="append")
    args = parser.parse_args()
    names = args.only or list(EXPERIMENTS)
    if not args.collect_only:
        for name in names:
            run(name, EXPERIMENTS[name], args.threads)
    rows = {}
    for name in names:
        metrics = json.loads((RUNS / name / "metrics.json").read_text())
        rows[name] = {
            "command": f"thrifty train {' '.join(EXPERIMENTS[name])} --output benchmarks/runs/{name} --train.num_threads {args.threads}",
            "validation": {k: metrics["validation"][k] for k in ("accuracy", "macro_f1", "examples")},
            "test": {k: metrics["test"][k] for k in ("accuracy", "macro_f1", "examples")} if "test" in metrics else None,
            "train": metrics["train"], "best": metrics["best"],
            "history": metrics["history"], "model": {k: v for k, v in metrics["model"].items() if k != "labels"},
        }
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(args.threads), "runs": rows}
    lines = [f"# Real results ({result['date']})", "",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, torch {result['machine']['torch']}, fp32.", "",
             "| run | validation acc | validation macro-F1 | test acc | test macro-F1 | best epoch | wall s | real tokens/s | padding |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        test = row["test"]
        test_cells = f"{test['accuracy']:.4f} | {test['macro_f1']:.4f}" if test else "held out | held out"
        best_epoch = next((round(h["epoch"]) for h in row["history"] if h["step"] == row["best"]["step"]), "-")
        lines.append(
            f"| {name} | {row['validation']['accuracy']:.4f} | {row['validation']['macro_f1']:.4f} | "
            f"{test_cells} | {best_epoch} | "
            f"{row['train']['seconds']:.0f} | {row['train']['tokens_per_second']:,.0f} | {100 * row['train']['padding_fraction']:.1f}% |")
    lines += ["", "Commands:", ""] + [f"- `{row['command']}`" for row in rows.values()]
    write_results("real_results", result, lines)


if __name__ == "__main__":
    main()
