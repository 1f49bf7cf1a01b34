"""Does `thrifty tune` beat the default config within the compute of three default runs? SST-2, all-MiniLM-L6-v2.

    python benchmarks/tune_sst2.py [--threads 2] [--trials 12] [--pruner median|asha|none]

1. The default run: `examples/sst2.yaml` as shipped (full fine-tuning, 3 epochs, lr 1e-4, batch 32), trained
   on the published train split, best epoch chosen on dev, test evaluated once. Its FLOPs are counted per real
   batch by the budget tracker (`--budget.max_flops` set far above what it needs, so nothing changes).
2. The search: `thrifty tune examples/sst2.yaml` over the default space for `full` (learning rate, epochs,
   batch size, weight decay, warmup, dropout), TPE + pruning (`--pruner`, default median), with `budget.max_flops` = 3 x the FLOPs
   the default run spent. Trials see train and dev only.
3. The best trial's model is evaluated once on the test split (`thrifty evaluate`): no retraining.

Compute is matched in counted FLOPs (training + evaluation), not seconds, so the comparison does not depend
on what else the machine was doing; seconds are reported too. Results: benchmarks/results/tune_sst2.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12, help="upper bound; the FLOP budget usually ends the search first")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pruner", default="median", choices=["median", "asha", "none"])
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from thrifty.api import evaluate
    from thrifty.training.recipe import train
    from thrifty.tuning.search import tune

    config = str(REPO / "examples" / "sst2.yaml")
    common = ["--train.num_threads", str(args.threads), "--tracking.tensorboard", "false", "--train.seed", str(args.seed)]
    work = Path(tempfile.mkdtemp(prefix="thrifty-tune-bench-"))

    t0 = time.perf_counter()
    default = train(config, output=work / "default", overrides=common + ["--budget.max_flops", "1e18"], progress=False)
    default_seconds = time.perf_counter() - t0
    d = default.metrics
    default_flops = d["budget"]["spent_flops"]

    t0 = time.perf_counter()
    search = tune(config, trials=args.trials, output=work / "search",
                  overrides=common + ["--budget.max_flops", f"{3 * default_flops:.6g}"], pruner=args.pruner,
                  progress=False)
    search_seconds = time.perf_counter() - t0
    s = search.summary
    best_run = Path(s["best"]["run_dir"])
    test_path = REPO / ".." / "shared" / "data" / "sst2" / "stsa.binary.test"
    tuned_test = evaluate(best_run, str(test_path.resolve()), output=work / "best-test")

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
        "setup": {"config": "examples/sst2.yaml", "model": "all-MiniLM-L6-v2", "data": "SST-2 published train/dev/test",
                  "search_budget_flops": 3 * default_flops, "trials_cap": args.trials, "seed": args.seed,
                  "pruner": args.pruner},
        "default": {"dev_accuracy": d["best"]["value"], "test_accuracy": d["test"]["accuracy"], "flops": default_flops,
                    "seconds": round(default_seconds, 1), "epochs": d["train"]["epochs"], "steps": d["train"]["steps"]},
        "tuned": {"dev_accuracy": s["best"]["value"], "test_accuracy": tuned_test["accuracy"], "params": s["best"]["params"],
                  "trial": s["best"]["number"], "search_flops": s["spent_flops"], "search_seconds": round(search_seconds, 1),
                  "counts": s["counts"], "stopped_by_budget": s["stopped_by_budget"]},
        "trials": s["trials"],
        "work_dir": str(work),
    }
    dev_gain = result["tuned"]["dev_accuracy"] - result["default"]["dev_accuracy"]
    md = [
        f"# thrifty tune vs the default config on SST-2 ({result['date']})", "",
        f"{result['machine']['cpu']}, {args.threads} threads, torch {result['machine']['torch']}. all-MiniLM-L6-v2, "
        f"SST-2 published splits. Search budget: 3 x the default run's counted FLOPs = {3 * default_flops / 1e12:.1f} TFLOP; "
        f"pruner: {args.pruner}; trials evaluate twice per epoch, the default run once.",
        "",
        "| | dev accuracy (selection) | test accuracy (once) | TFLOP | seconds |",
        "| --- | --- | --- | --- | --- |",
        f"| default config (3 epochs, lr 1e-4, b32) | {d['best']['value']:.4f} | {d['test']['accuracy']:.4f} | "
        f"{default_flops / 1e12:.1f} | {default_seconds:.0f} |",
        f"| tuned (best of {s['counts']['complete'] + s['counts']['pruned']} trials) | {s['best']['value']:.4f} | {tuned_test['accuracy']:.4f} | "
        f"{s['spent_flops'] / 1e12:.1f} (whole search) | {search_seconds:.0f} (whole search) |",
        "",
        f"Dev gain: {100 * dev_gain:+.2f} points. Trials: {s['counts']['complete']} complete, {s['counts']['pruned']} pruned"
        + (", search stopped by its FLOP budget." if s["stopped_by_budget"] else "."),
        "Best trial: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["best"]["params"].items()),
        "",
        "| trial | state | dev accuracy | TFLOP | seconds | params |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in s["trials"]:
        params = ", ".join(f"{k.split('.')[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[1]}={v}"
                           for k, v in t["params"].items())
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        flops = "-" if t["flops"] is None else f"{t['flops'] / 1e12:.1f}"
        secs = "-" if t["seconds"] is None else f"{t['seconds']:.0f}"
        md.append(f"| {t['number']} | {t['state']} | {value} | {flops} | {secs} | {params} |")
    md += ["", "Dev accuracy picked the trial (and the default run's best epoch), so it flatters both; the test "
               "column is each model's one look at the test split."]
    write_results("tune_sst2", result, md)  # earlier variants were renamed by hand: tune_sst2_{median,asha}.md


if __name__ == "__main__":
    main()
