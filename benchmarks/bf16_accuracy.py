"""Does bf16 cost accuracy? thrifty in fp32 vs thrifty with `train.precision: auto` (bf16 autocast on a CPU with AMX
or AVX512-BF16), the same runs otherwise: the guard behind `auto` choosing bf16 for a task.

    python benchmarks/bf16_accuracy.py --data banking77 --seeds 0,1,2,3,4
    python benchmarks/bf16_accuracy.py --data conll2003 --seeds 0,1,2,3,4
    python benchmarks/bf16_accuracy.py --data wnut17 --seeds 42,43,44,45,46

SST-2 is guarded by benchmarks/train_throughput.py, whose thrifty and thrifty-fp32 rows are this comparison on the
SST-2 recipe (2,000 sentences, 3 epochs, 5 seeds).

- banking77: examples/banking77.yaml (77 intents, full fine-tuning of all-MiniLM-L6-v2, lr 2e-4, batch 32, the
  seeded stratified 10% validation split carved from train.csv: 1,001 texts), on a seeded sample of 3,000 of the
  remaining training rows, 5 epochs, no early stopping; dev accuracy (and macro-F1) of the best epoch.
- conll2003: examples/conll2003.yaml (token classification, lr 1e-4, batch 32) on a seeded sample of 2,000 training
  sentences, 3 epochs; entity-level F1 on the whole published dev set (3,250 sentences) at the best epoch.
- wnut17: examples/wnut17.yaml as shipped (the whole training file, 3,394 sentences, 5 epochs, lr 1e-4, batch 32);
  F1 on the published dev set (1,009 sentences) at the best epoch: the full-set NER comparison's thrifty side
  (ner_vs_trainer.py) in both precisions, about 4 minutes a run.

Same for both sides: the rows, model, recipe, seed, 2 threads, evaluation each epoch; what differs is only the
precision of the matrix products (fp32 master weights and optimizer state on both sides). Accuracy only: the
speed of bf16 is measured on a quiet machine by train_throughput.py, not here. Each run is a fresh
process, the order alternated per seed; results are appended to benchmarks/results/bf16_accuracy_{data}.json and
summarised per CPU model. The floor: the bf16 median within 0.5 point of the fp32 median; where a task misses it,
its TaskTraits row (traits.py) sets trains_in_bf16=False and `auto` keeps fp32 for it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import REPO, by_cpu, compare, head_by_cpu, spread, table_by_cpu

SYSTEMS = ("fp32", "bf16")
DATA = {
    "banking77": {"config": "banking77.yaml", "metric": "accuracy", "also": "macro_f1",
                  "overrides": ["--data.max_train_examples", "3000", "--train.epochs", "5",
                                "--train.early_stopping_patience", "0"]},
    "conll2003": {"config": "conll2003.yaml", "metric": "f1", "also": "precision",
                  "overrides": ["--data.max_train_examples", "2000", "--train.epochs", "3", "--data.test", "null"]},
    "wnut17": {"config": "wnut17.yaml", "metric": "f1", "also": "precision", "overrides": ["--data.test", "null"]},
}


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    import thrifty

    spec = DATA[args.data]
    with tempfile.TemporaryDirectory() as tmp:
        result = thrifty.train(REPO / "examples" / spec["config"], output=Path(tmp) / "run", progress=False,
                               overrides=[*spec["overrides"], "--train.seed", str(seed), "--train.num_threads",
                                          str(args.threads), "--train.precision", "fp32" if system == "fp32" else "auto",
                                          "--tracking.tensorboard", "false", "--tracking.energy", "false"])
    m = result.metrics
    if m["model"]["precision"] != system:
        raise SystemExit(f"{system} ran in {m['model']['precision']}: {m['model']['precision_reason']}")
    return {"dev": m["validation"][spec["metric"]], "dev_also": m["validation"][spec["also"]],
            "precision_reason": m["model"]["precision_reason"], "best_step": m["best"]["step"],
            "loop_wall_seconds": m["train"]["loop_wall_seconds"], "tokens_per_second": m["train"]["tokens_per_second"],
            "bf16_agreement": (m["model"].get("bf16_agreement") or {}).get("label_agreement")}


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    spec = DATA[args.data]
    lines = head_by_cpu(f"bf16 autocast vs fp32: {args.data}", f"python benchmarks/bf16_accuracy.py --data {args.data} "
                        "--seeds 0,1,2,3,4", saved,
                        f"Dev {spec['metric']} of the best epoch, median (per seed); the floor is 0.5 point.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["precision", "seeds", f"dev {spec['metric']} (per seed)",
                                          f"dev {spec['also']}", "best step", "bf16 weights' label agreement with fp32"])
        medians = {}
        for system in SYSTEMS:
            rs = [r for r in runs if r["system"] == system]
            if not rs:
                continue
            medians[system] = statistics.median(r["dev"] for r in rs)
            each = ", ".join(format(r["dev"], ".4f") for r in rs)
            lines.append(f"| {system} | {', '.join(str(r['seed']) for r in rs)} | {medians[system]:.4f} ({each}) |"
                         f" {spread([r['dev_also'] for r in rs], '{:.4f}')} | "
                         f"{', '.join(str(r['best_step']) for r in rs)} | "
                         f"{spread([r['bf16_agreement'] for r in rs if r.get('bf16_agreement') is not None], '{:.4f}')} |")
        if len(medians) == 2:
            gap = 100 * (medians["bf16"] - medians["fp32"])
            verdict = "within the 0.5-point floor" if abs(gap) <= 0.5 or gap > 0 else "**misses the 0.5-point floor**"
            lines += ["", f"bf16 - fp32 (medians): {gap:+.2f} points: {verdict}."]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA), required=True)
    compare(__file__, "bf16_accuracy_{data}", SYSTEMS, run_system, summarise, parser,
            settings={"data": "see the script's DATA"}, worker_args=lambda args: ["--data", args.data])
