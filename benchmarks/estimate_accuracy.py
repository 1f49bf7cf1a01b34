"""How close is `thrifty estimate` to the run it predicts? Estimate, then train the same config, per case.

    python benchmarks/estimate_accuracy.py [--threads 2] [--epochs 1]

Cases: full, freeze and lora of all-MiniLM-L6-v2 on SST-2 (published train/dev) and on Banking77
(3,000 training rows, 10% carved for validation). Each case: `thrifty.cost.estimate.estimate(config)`, then
`thrifty.train(config)` in the same process and thread count. Compared: predicted seconds vs the run's
measured training + evaluation + frozen-cache seconds (what the estimate covers), and vs its whole wall time
(which also loads the model, reads the data and saves the result). Results:
benchmarks/results/estimate_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SST2, machine, write_results  # noqa: E402

BANKING77 = (REPO / ".." / "shared" / "data" / "banking77" / "train.csv").resolve()


def cases(epochs: int) -> dict[str, dict]:
    sst2 = {"data": {"train": str(SST2 / "stsa.binary.train"), "validation": str(SST2 / "stsa.binary.dev")}}
    banking = {"data": {"train": str(BANKING77), "label_column": "category", "max_train_examples": 3000}}
    out = {}
    for data_name, data in (("sst2", sst2), ("banking77", banking)):
        for strategy in ("full", "freeze", "lora"):
            out[f"{data_name} {strategy}"] = {**data, "strategy": {"name": strategy},
                                              "train": {"epochs": epochs, "batch_size": 32},
                                              "tracking": {"tensorboard": False}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    import torch

    import thrifty
    from thrifty.cost.estimate import estimate

    torch.set_num_threads(args.threads)
    rows = {}
    for name, config in cases(args.epochs).items():
        e = estimate(config)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - start
        covered = result.metrics["history"][-1]["seconds"]  # training + evaluations + frozen cache, as estimated
        rows[name] = {"predicted_seconds": e["predicted_seconds"], "measured_seconds": covered, "wall_seconds": round(wall, 1),
                      "error": round(e["predicted_seconds"] / covered - 1, 3),
                      "error_vs_wall": round(e["predicted_seconds"] / wall - 1, 3),
                      "estimate_took_seconds": e["estimate_seconds"], "train_flops": e["train_flops"],
                      "peak_memory_bytes": e["peak_memory_bytes"]}
        print(f"{name}: predicted {e['predicted_seconds']:.0f}s, measured {covered:.0f}s ({100 * rows[name]['error']:+.0f}%), "
              f"wall {wall:.0f}s", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads), "epochs": args.epochs, "cases": rows}
    lines = [f"# `thrifty estimate` vs the run it predicts ({result['date']})", "",
             f"{result['machine']['cpu']}, {args.threads} threads, torch {result['machine']['torch']}; all-MiniLM-L6-v2, "
             f"{args.epochs} epoch(s), batch 32. Measured = training + evaluation + frozen-cache seconds of the run; "
             "wall also includes loading, data preparation and saving.", "",
             "| case | predicted s | measured s | error | wall s | error vs wall | estimate took s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['predicted_seconds']:.0f} | {r['measured_seconds']:.0f} | {100 * r['error']:+.0f}% | "
                     f"{r['wall_seconds']:.0f} | {100 * r['error_vs_wall']:+.0f}% | {r['estimate_took_seconds']:.0f} |")
    write_results("estimate_accuracy", result, lines)


if __name__ == "__main__":
    main()
