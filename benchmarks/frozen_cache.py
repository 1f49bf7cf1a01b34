"""Frozen-layer caching: seconds per epoch of `freeze`/`head` with and without the cache, vs `full`.

    python benchmarks/frozen_cache.py          # 2,000 SST-2 sentences, 3 epochs, each variant once (~4 min)

Each variant runs in its own process with the same thread count, on the same data, model, batch size and
max length. Epoch time = the sum of its optimizer-step times from RUN_DIR/train_log.jsonl (evaluation not
included); the cache's one-time build is shown separately and charged to epoch 1. Results:
benchmarks/results/frozen_cache.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import REPO, SST2, machine, write_results
VARIANTS = {
    "full": {"name": "full"},
    "freeze-4-recompute": {"name": "freeze", "frozen_layers": 4, "cache": False},
    "freeze-4-cached": {"name": "freeze", "frozen_layers": 4, "cache": True},
    "freeze-3-cached": {"name": "freeze", "frozen_layers": 3, "cache": True},
    "head-cached": {"name": "head", "cache": True},
}


def run_variant(name: str, n: int, epochs: int, threads: int, workdir: Path) -> dict:
    rows = [line for line in (SST2 / "stsa.binary.train").read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = random.Random(0).sample(rows, n)
    train_file = workdir / "train.txt"
    train_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    variant = dict(VARIANTS[name])
    cache = variant.pop("cache", True)
    config = {
        "data": {"train": str(train_file), "validation": str(SST2 / "stsa.binary.dev")},
        "strategy": variant,
        "train": {"epochs": epochs, "batch_size": 32, "seed": 0, "num_threads": threads, "cache_frozen_layers": cache},
        "tracking": {"tensorboard": False},
    }
    config_file = workdir / f"{name}.json"
    config_file.write_text(json.dumps(config))
    code = ("import json, sys, thrifty; c = json.load(open(sys.argv[1])); "
            "thrifty.train(c, output=sys.argv[2], progress=False)")
    run_dir = workdir / name
    subprocess.run([sys.executable, "-c", code, str(config_file), str(run_dir)], check=True, cwd=REPO,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_epoch = defaultdict(float)
    for line in (run_dir / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        per_epoch[record["epoch"]] += record["seconds"]
    epochs_s = [round(per_epoch[e], 2) for e in sorted(per_epoch)]
    epochs_s[0] = round(epochs_s[0] + metrics["train"]["cache_seconds"], 2)
    return {"epoch_seconds": epochs_s, "cache_seconds": metrics["train"]["cache_seconds"],
            "trainable_parameters": metrics["model"]["trainable_parameters"],
            "dev_accuracy": metrics["validation"]["accuracy"], "learning_rate": metrics["model"]["learning_rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in VARIANTS:
            results[name] = run_variant(name, args.examples, args.epochs, args.threads, Path(tmp))
            print(name, results[name], flush=True)
    full_later = sum(results["full"]["epoch_seconds"][1:]) / max(1, args.epochs - 1)
    for row in results.values():
        later = sum(row["epoch_seconds"][1:]) / max(1, args.epochs - 1)
        row["later_epoch_seconds"] = round(later, 2)
        row["later_epoch_speedup_vs_full"] = round(full_later / later, 2)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
           "setup": {"data": f"SST-2 train, {args.examples} sentences (seeded sample)", "epochs": args.epochs,
                     "batch_size": 32, "model": "all-MiniLM-L6-v2 (6 layers)"},
           "variants": results}
    lines = [f"# Frozen-layer caching ({out['date']})", "",
             f"SST-2 train ({args.examples} sentences), {args.epochs} epochs, batch 32, all-MiniLM-L6-v2, "
             f"{out['machine']['cpu']}, {args.threads} threads, torch {out['machine']['torch']}. Epoch 1 includes building the cache.", "",
             "| variant | trainable params | epoch seconds | later epoch vs full | dev accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['trainable_parameters'] / 1e6:.2f}M | {', '.join(map(str, row['epoch_seconds']))} | "
                     f"{row['later_epoch_speedup_vs_full']:.2f}x | {row['dev_accuracy']:.4f} |")
    write_results("frozen_cache", out, lines)


if __name__ == "__main__":
    main()
