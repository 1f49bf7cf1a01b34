"""Time to accuracy: wall seconds from the first training step until SST-2 dev accuracy first reaches 0.87.

    python benchmarks/time_to_accuracy.py --seeds 0,1,2,3,4      # ~7 min per seed on 2 cores

Systems: thrifty as shipped (`train.precision: auto`: bf16 autocast on a CPU with AMX or AVX512-BF16, fp32 master
weights; fp32 elsewhere; each run records which), the length-grouped Trainer in fp32 (`trainer`: what a CPU user runs
by default) and with `bf16=True` (`trainer-bf16`: equal precision); on request `thrifty-fp32`
(`--train.precision fp32`). The older all-fp32 table (before thrifty chose bf16 on such CPUs) is kept in
results/time_to_accuracy_fp32_2026-11-27.md.

Both sides run the same recipe on the same rows, each in a fresh process, the order alternated per seed:
- data: SST-2 train/dev after thrifty's cleaning (6,909 / 872 rows: 9 duplicates and 2 sentences that
  leak into test dropped, 3 texts normalised) — the Trainer reads the very rows thrifty trains on;
  max_length 64 (thrifty's automatic choice, set explicitly on both sides);
- recipe: all-MiniLM-L6-v2, lr 1e-4, batch 32, linear decay after 6% warmup, weight decay 0.01 (not on
  biases/LayerNorm), gradient clipping 1.0, at most 3 epochs, the seed;
- batches: length-grouped on both sides (the Trainer's `train_sampling_strategy="group_by_length"`: megabatches of 50 batches
  sorted by length, as thrifty's windows of 50 batches);
- evaluation every 54 steps (4 per epoch) on both, evaluation batch 128; the Trainer saves a checkpoint at
  each evaluation and loads the best at the end (`load_best_model_at_end`), thrifty keeps its best weights
  and writes its checkpoint after each evaluation; each stops at the first evaluation that reaches 0.87;
- clock: a stopwatch started at the first training step and read at the end of the evaluation that
  reaches the target, so steps, evaluations, checkpoints and logging all count on both sides
  (thrifty: `wall_seconds` of its history; Trainer: a callback's `on_step_begin` / `on_evaluate`, see
  common.trainer_classification). Model
  loading and tokenisation are outside that clock, for both; the whole process's wall time is reported too.

What differs by design: thrifty's own loop (fused AdamW, the last layer computed for [CLS] only, cheaper dropout masks
on a CPU, freed memory kept for reuse (models/allocator.py), a checkpoint of the trainable state instead of the
Trainer's full checkpoint). Results are appended per run to
benchmarks/results/time_to_accuracy.json and summarised (median, min-max) in the .md.
"""

from __future__ import annotations

import argparse
import statistics

from common import (REPO, by_cpu, compare, head_by_cpu, paired_ratios, spread, table_by_cpu, thrifty_classification,
                    trainer_classification)

TARGET, MAX_EPOCHS, EVAL_EVERY, MAX_LENGTH = 0.87, 3, 54, 64
CONFIG = REPO / "examples" / "sst2.yaml"
SYSTEMS = ("thrifty", "trainer", "trainer-bf16", "thrifty-fp32")
TRAINERS = ("trainer", "trainer-bf16")


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    if system.startswith("thrifty"):
        result = thrifty_classification(str(CONFIG), seed, [
            "--train.eval_every_steps", str(EVAL_EVERY), "--train.stop_at_metric", str(TARGET),
            "--train.epochs", str(MAX_EPOCHS), "--train.early_stopping_patience", "0", "--data.max_length", str(MAX_LENGTH),
            *(["--train.precision", "fp32"] if system == "thrifty-fp32" else [])])
    else:
        from thrifty.inputs import as_config

        result = trainer_classification(as_config(str(CONFIG), ["--data.test", "null"]), seed, max_length=MAX_LENGTH,
                                        epochs=MAX_EPOCHS, grouped=True, eval_steps=EVAL_EVERY, target=TARGET,
                                        bf16=system == "trainer-bf16")
        result["precision"] = "bf16" if system == "trainer-bf16" else "fp32"
    hit = next((h for h in result["history"] if h["accuracy"] >= TARGET), None)
    return {"seconds_to_target": hit and hit["wall_seconds"], "step_at_target": hit and hit["step"], **result}


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    lines = head_by_cpu(f"Time to {TARGET} SST-2 dev accuracy: thrifty vs the grouped Trainer, fp32 and bf16",
                        "python benchmarks/time_to_accuracy.py --seeds 0,1,2,3,4", saved,
                        "Wall seconds from the first training step to the end of the evaluation that reaches the target; "
                        f"evaluation every {EVAL_EVERY} steps on all sides; each run a fresh process, order alternated "
                        "per seed.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["system", "precision", "seeds", "seconds to target, median (min-max)",
                                          "reached at step (per seed)", "process wall s median"])
        by = {s: [r for r in runs if r["system"] == s] for s in SYSTEMS}
        medians = {}
        for system, rs in by.items():
            if not rs:
                continue
            hits = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
            steps = ", ".join(str(r["step_at_target"]) if r["step_at_target"] else "not reached" for r in rs)
            if hits:
                medians[system] = statistics.median(hits)
            precisions = "/".join(sorted({r.get("precision", "fp32") for r in rs}))
            lines.append(f"| {system} | {precisions} | {', '.join(str(r['seed']) for r in rs)} | "
                         + (spread(hits) if hits else "not reached")
                         + (f" ({len(rs) - len(hits)} not reached)" if hits and len(hits) < len(rs) else "")
                         + f" | {steps} | {statistics.median(r['process_wall_seconds'] for r in rs):.0f} |")
        per_step = {s: statistics.median(r["seconds_to_target"] / r["step_at_target"] for r in rs if r["step_at_target"])
                    for s, rs in by.items() if any(r["step_at_target"] for r in rs)}
        for other in TRAINERS:
            if "thrifty" not in medians or other not in medians:
                continue
            paired = paired_ratios(runs, "thrifty", other, lambda r: r["seconds_to_target"])
            lines += ["", f"thrifty / {other} (medians): **{medians['thrifty'] / medians[other]:.2f}x** the time; seed by "
                          f"seed {spread(paired, '{:.2f}')}x (median (min-max) of the {len(paired)} paired ratios). "
                          f"Seconds per step up to the target (steps, evaluations and checkpoints), median: thrifty "
                          f"{per_step['thrifty']:.3f}, {other} {per_step[other]:.3f} = "
                          f"**{per_step['thrifty'] / per_step[other]:.2f}x** the time per step; the rest of the gap is "
                          "the step at which each first reached the target."]
    return lines


if __name__ == "__main__":
    compare(__file__, "time_to_accuracy", SYSTEMS, run_system, summarise,
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
            default_systems=SYSTEMS[:3],
            settings={"target": TARGET, "max_epochs": MAX_EPOCHS, "eval_every": EVAL_EVERY, "max_length": MAX_LENGTH})
