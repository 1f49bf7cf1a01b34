"""`thrifty estimate --hardware h200` against the H200 runs measured by benchmarks/gpu_train.py.

    python benchmarks/estimate_gpu_profile.py [--threads 2]

No GPU is needed: the estimate of another machine counts FLOPs on the meta device and applies the
profile's peak x efficiency and host launch time per layer (resources/hardware.yaml). Each configuration of
`benchmarks/results/gpu_train.json` (SmolLM2-135M, SST-2 train, 2 epochs, max length 128) is estimated here
and compared with the training seconds measured there (thrifty's loop and the Trainer). Results:
benchmarks/results/estimate_gpu_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SST2, machine, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from thrifty.cost.estimate import estimate

    measured = json.loads((RESULTS / "gpu_train.json").read_text())
    runs = {}
    for r in measured["runs"]:
        runs.setdefault(r["config"], {})[r["system"]] = r
    rows = []
    for name, systems in runs.items():
        ours = systems.get("thrifty")
        if ours is None:
            continue
        config = {"model": {"name": "smollm2-135m"},
                  "data": {"train": str(SST2 / "stsa.binary.train"), "validation": str(SST2 / "stsa.binary.dev"),
                           "max_length": 128},
                  "strategy": {"name": ours["strategy"]},
                  "train": {"epochs": 2, "batch_size": ours["batch_size"], "learning_rate": ours["learning_rate"],
                            "num_threads": args.threads},
                  "cost": {"hardware": "h200", "price_per_hour": 1.0}}
        t0 = time.perf_counter()
        e = estimate(config)
        predicted = e["predicted"]["training_seconds"] + e["predicted"]["frozen_cache_seconds"]
        others = {s: r["seconds"] for s, r in systems.items() if s != "thrifty"}
        rows.append({"config": name, "predicted_seconds": round(predicted, 1), "thrifty_seconds": ours["seconds"],
                     "error_vs_thrifty": round(predicted / ours["seconds"] - 1, 3),
                     "others": others, "errors_vs_others": {s: round(predicted / v - 1, 3) for s, v in others.items()},
                     "train_flops": e["train_flops"], "steps": e["steps"], "estimate_seconds": round(time.perf_counter() - t0, 1)})
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads), "measured_on": measured["machine"],
              "profile": e["hardware"], "rows": rows}
    md = [f"# thrifty estimate --hardware h200 vs measured H200 runs ({result['date']})", "",
          f"Estimated here ({result['machine']['cpu']}, no GPU) from the h200 profile: {e['hardware']['peak_tflops']:g} "
          f"TFLOP/s peak x {e['hardware']['efficiency']:g}, at least the host's launch time per layer. Measured: "
          f"`benchmarks/results/gpu_train.json` ({measured['machine']['gpu']}, {measured['date']}), training seconds "
          "(no evaluation), SmolLM2-135M, SST-2, 2 epochs, max length 128.", "",
          "| config | predicted s | thrifty measured s | error | Trainer measured s | error |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        trainer = "; ".join(f"{v:.1f} ({s})" for s, v in r["others"].items()) or "-"
        errs = "; ".join(f"{100 * v:+.0f}%" for v in r["errors_vs_others"].values()) or "-"
        md.append(f"| {r['config']} | {r['predicted_seconds']:.1f} | {r['thrifty_seconds']:.1f} | "
                  f"{100 * r['error_vs_thrifty']:+.0f}% | {trainer} | {errs} |")
    write_results("estimate_gpu_profile", result, md)


if __name__ == "__main__":
    main()
