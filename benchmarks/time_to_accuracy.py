"""Time to accuracy: wall seconds from the first training step until SST-2 dev accuracy first reaches 0.87.

    python benchmarks/time_to_accuracy.py --seeds 0,1,2,3,4      # ~8 min per seed on 2 cores

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

What differs by design: thrifty's own loop (fused AdamW, the last layer computed for [CLS] only, a
checkpoint of the trainable state instead of the Trainer's full checkpoint). Results are appended per run to
benchmarks/results/time_to_accuracy.json and summarised (median, min-max) in the .md.
"""

from __future__ import annotations

import argparse
import statistics

from common import REPO, compare, paired_ratios, spread, table_head, thrifty_classification, trainer_classification

TARGET, MAX_EPOCHS, EVAL_EVERY, MAX_LENGTH = 0.87, 3, 54, 64
CONFIG = REPO / "examples" / "sst2.yaml"
SYSTEMS = ("thrifty", "trainer")


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    if system == "thrifty":
        result = thrifty_classification(str(CONFIG), seed, [
            "--train.eval_every_steps", str(EVAL_EVERY), "--train.stop_at_metric", str(TARGET),
            "--train.epochs", str(MAX_EPOCHS), "--train.early_stopping_patience", "0", "--data.max_length", str(MAX_LENGTH)])
    else:
        from thrifty.inputs import as_config

        result = trainer_classification(as_config(str(CONFIG), ["--data.test", "null"]), seed, max_length=MAX_LENGTH,
                                        epochs=MAX_EPOCHS, grouped=True, eval_steps=EVAL_EVERY, target=TARGET)
    hit = next((h for h in result["history"] if h["accuracy"] >= TARGET), None)
    return {"seconds_to_target": hit and hit["wall_seconds"], "step_at_target": hit and hit["step"], **result}


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    runs = saved["runs"]
    lines = table_head(f"Time to {TARGET} SST-2 dev accuracy: thrifty vs the grouped Trainer, same recipe",
                       "python benchmarks/time_to_accuracy.py --seeds 0,1,2,3,4", saved,
                       "Wall seconds from the first training step to the end of the evaluation that reaches the target; "
                       f"evaluation every {EVAL_EVERY} steps on both sides; each run a fresh process, order alternated "
                       "per seed.", ["system", "seeds", "seconds to target, median (min-max)", "reached at step (per seed)",
                                     "process wall s median"])
    by = {s: [r for r in runs if r["system"] == s] for s in SYSTEMS}
    medians = {}
    for system, rs in by.items():
        if not rs:
            continue
        hits = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
        steps = ", ".join(str(r["step_at_target"]) if r["step_at_target"] else "not reached" for r in rs)
        if hits:
            medians[system] = statistics.median(hits)
        lines.append(f"| {system} | {', '.join(str(r['seed']) for r in rs)} | "
                     + (spread(hits) if hits else "not reached")
                     + (f" ({len(rs) - len(hits)} not reached)" if hits and len(hits) < len(rs) else "")
                     + f" | {steps} | {statistics.median(r['process_wall_seconds'] for r in rs):.0f} |")
    if len(medians) == 2:
        paired = paired_ratios(runs, "thrifty", "trainer", lambda r: r["seconds_to_target"])
        lines += ["", f"thrifty / Trainer (medians): **{medians['thrifty'] / medians['trainer']:.2f}x** the time; seed by "
                      f"seed {spread(paired, '{:.2f}')}x (median (min-max) of the {len(paired)} paired ratios)."]
        per_step = {s: statistics.median(r["seconds_to_target"] / r["step_at_target"] for r in rs if r["step_at_target"])
                    for s, rs in by.items()}
        lines += ["", f"Seconds per step up to the target (steps, evaluations and checkpoints), median: thrifty "
                      f"{per_step['thrifty']:.3f}, Trainer {per_step['trainer']:.3f} = "
                      f"**{per_step['thrifty'] / per_step['trainer']:.2f}x** the time per step; the rest of the gap is the "
                      "step at which each first reached the target."]
    return lines


if __name__ == "__main__":
    compare(__file__, "time_to_accuracy", SYSTEMS, run_system, summarise,
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
            settings={"target": TARGET, "max_epochs": MAX_EPOCHS, "eval_every": EVAL_EVERY, "max_length": MAX_LENGTH})
