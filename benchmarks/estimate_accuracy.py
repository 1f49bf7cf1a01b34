"""How close is `thrifty estimate` to the run it predicts? Estimate, then train the same config, per case.

    python benchmarks/estimate_accuracy.py [--threads 2] [--epochs 1] [--only held-out]

Two groups of cases, all with all-MiniLM-L6-v2:
- tuning: the cases the CPU calibration's constants were tuned on — full, freeze and lora on SST-2
  (published train/dev) and on Banking77 (3,000 training rows, 10% carved for validation), batch 32;
- held-out: cases never used to tune anything — other data sets (TREC, Emotion, SMS spam), the head
  strategy, max_length 32 and 256, batch 8 and 64 — reported separately.

Each case runs in a fresh process with its own empty cache (so the estimate calibrates from scratch, as a
first run does): `thrifty.cost.estimate.estimate(config)`, then a second estimate that reuses the kept
calibration (what a repeated budgeted run pays), then `thrifty.train(config)`. Compared: predicted seconds
vs the run's measured training + evaluation + frozen-cache seconds (what the estimate covers), and vs its
whole wall time (which also loads the model, reads the data and saves the result).
Results: benchmarks/results/estimate_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SST2, machine, run_worker, write_results  # noqa: E402

DATA = (REPO / ".." / "shared" / "data").resolve()


def cases(epochs: int) -> dict[str, tuple[str, dict]]:
    """name -> (group, config)."""
    def run(data: dict, strategy: str, batch: int = 32, **data_extra) -> dict:
        return {"data": {**data, **data_extra}, "strategy": {"name": strategy},
                "train": {"epochs": epochs, "batch_size": batch}, "tracking": {"tensorboard": False, "energy": False}}

    sst2 = {"train": str(SST2 / "stsa.binary.train"), "validation": str(SST2 / "stsa.binary.dev")}
    banking = {"train": str(DATA / "banking77" / "train.csv"), "label_column": "category", "max_train_examples": 3000}
    trec = {"train": str(DATA / "trec" / "TREC.train.all"), "encoding_errors": "replace"}  # one line is Latin-1
    emotion = {"train": str(DATA / "emotion" / "train.txt"), "validation": str(DATA / "emotion" / "val.txt"),
               "text_column": "text", "label_column": "label_name", "max_train_examples": 4000}
    sms = {"train": str(DATA / "sms_spam" / "SMSSpamCollection"), "max_train_examples": 2000}
    out = {}
    for name, data in (("sst2", sst2), ("banking77", banking)):
        for strategy in ("full", "freeze", "lora"):
            out[f"{name} {strategy}"] = ("tuning", run(data, strategy))
    out["trec full, max_length 32"] = ("held-out", run(trec, "full", max_length=32))
    out["trec head, batch 8"] = ("held-out", run(trec, "head", batch=8))
    out["emotion freeze, batch 64"] = ("held-out", run(emotion, "freeze", batch=64))
    out["emotion lora, batch 8"] = ("held-out", run(emotion, "lora", batch=8, max_train_examples=1500))
    out["sms spam full, max_length 256"] = ("held-out", run(sms, "full", max_length=256))
    out["sst2 full, batch 64, max_length 256"] = ("held-out", run(sst2, "full", batch=64, max_length=256,
                                                                 max_train_examples=3000))
    return out


def worker(name: str, epochs: int) -> dict:
    import thrifty
    from thrifty.cost.estimate import estimate

    config = cases(epochs)[name][1]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["THRIFTY_CACHE_DIR"] = str(Path(tmp) / "cache")  # a first run: no kept calibration or tokens
        e = estimate(config)
        kept = estimate(config)  # a repeated run: the calibration kept by the first
        start = time.perf_counter()
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - start
    covered = result.metrics["history"][-1]["seconds"]  # training + evaluations + frozen cache, as estimated
    return {"predicted_seconds": e["predicted_seconds"], "measured_seconds": covered, "wall_seconds": round(wall, 1),
            "error": round(e["predicted_seconds"] / covered - 1, 3),
            "error_vs_wall": round(e["predicted_seconds"] / wall - 1, 3),
            "estimate_took_seconds": e["estimate_seconds"], "estimate_kept_calibration_seconds": kept["estimate_seconds"],
            "kept_calibration_used": bool(kept["calibration"] and kept["calibration"].get("cached")),
            "examples": e["examples"], "steps": e["steps"], "max_length": e["max_length"],
            "train_flops": e["train_flops"], "peak_memory_bytes": e["peak_memory_bytes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--only", choices=["tuning", "held-out"])
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, args.epochs)), flush=True)
        return
    saved = REPO / "benchmarks" / "results" / "estimate_accuracy.json"
    rows = {}  # --only reruns one group and keeps the other's last results
    if args.only and saved.exists():
        rows = {n: r for n, r in json.loads(saved.read_text())["cases"].items() if r.get("group") != args.only}
    for name, (group, _) in cases(args.epochs).items():
        if args.only and group != args.only:
            continue
        r = run_worker(__file__, ["--worker", name, "--epochs", str(args.epochs)], args.threads)
        rows[name] = {"group": group, **r}
        print(f"{name}: predicted {r['predicted_seconds']:.0f}s, measured {r['measured_seconds']:.0f}s "
              f"({100 * r['error']:+.0f}%), wall {r['wall_seconds']:.0f}s", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads), "epochs": args.epochs, "cases": rows}
    lines = [f"# `thrifty estimate` vs the run it predicts ({result['date']})", "",
             f"`python benchmarks/estimate_accuracy.py` on {result['machine']['cpu']}, {args.threads} threads, torch "
             f"{result['machine']['torch']}; all-MiniLM-L6-v2, {args.epochs} epoch(s). Each case a fresh process with an "
             "empty cache. Measured = training + evaluation + frozen-cache seconds of the run; wall also includes "
             "loading, data preparation and saving. *Estimate* = the first estimate's own time (it calibrates); "
             "*kept* = a second estimate reusing the kept calibration.", ""]
    for group in ("tuning", "held-out"):
        picked = {n: r for n, r in rows.items() if r["group"] == group}
        if not picked:
            continue
        errors = [r["error"] for r in picked.values()]
        lines += [f"## {'Cases the calibration was tuned on' if group == 'tuning' else 'Held-out cases (never used to tune)'}",
                  "", "| case | steps | predicted s | measured s | error | wall s | error vs wall | estimate s | kept s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in picked.items():
            lines.append(f"| {name} | {r['steps']} | {r['predicted_seconds']:.0f} | {r['measured_seconds']:.0f} | "
                         f"{100 * r['error']:+.0f}% | {r['wall_seconds']:.0f} | {100 * r['error_vs_wall']:+.0f}% | "
                         f"{r['estimate_took_seconds']:.0f} | {r['estimate_kept_calibration_seconds']:.0f} |")
        lines += ["", f"Error range {100 * min(errors):+.0f}% to {100 * max(errors):+.0f}%, median "
                      f"{100 * statistics.median(errors):+.0f}%, median |error| "
                      f"{100 * statistics.median(abs(x) for x in errors):.0f}% over {len(errors)} cases.", ""]
    write_results("estimate_accuracy", result, lines)


if __name__ == "__main__":
    main()
