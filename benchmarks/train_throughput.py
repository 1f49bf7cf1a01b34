"""Training throughput at equal accuracy: thrifty vs Hugging Face Trainer (random and length-grouped batches), in
fp32 and in bf16.

    python benchmarks/train_throughput.py --seeds 0,1,2,3,4      # ~5 min per seed on 2 cores

What a new user would try: `examples/sst2.yaml` on a seeded sample of 2,000 SST-2 training sentences, the
published dev set, 3 epochs. All three systems train on the same rows (thrifty's cleaning; the Trainer reads
them through `prepare_data`) with the same recipe (common.trainer_classification): all-MiniLM-L6-v2, lr 1e-4,
batch 32, warmup 6% then linear decay, weight decay 0.01 (not on biases/LayerNorm), clipping at 1.0,
max_length 64, the seed; evaluation and a checkpoint after each epoch, the best epoch's model kept.

- thrifty: `thrifty.train` on the same config, as shipped: `train.precision: auto`, which is bf16 autocast on a CPU
  with AMX or AVX512-BF16 (fp32 master weights and optimizer state) and fp32 elsewhere (each run records which);
- thrifty-fp32: the same with `--train.precision fp32`;
- trainer-grouped: `Trainer` + `DataCollatorWithPadding` with `train_sampling_strategy="group_by_length"`
  (megabatches of 50 batches), fp32: what a CPU user runs by default;
- trainer-grouped-bf16: the same with `bf16=True` (the Trainer's bf16 autocast): equal precision with thrifty;
- trainer (on request): the Trainer's default random batches, fp32;
- trainer-grouped-bf16-kept-memory: the grouped bf16 Trainer in a process whose glibc malloc keeps freed memory for
  reuse as thrifty sets it (models/allocator.py; what preloading jemalloc or tcmalloc gives a careful CPU user): how
  much of the gap that setting alone is;
- ablations, run on request (`--systems thrifty-window15,thrifty-random,thrifty-torch-dropout`): thrifty with
  PyTorch's own dropout masks (`train.fast_dropout: false`); thrifty sorting within windows of 15
  batches (what the Trainer's megabatch rule, min(batches / 4, 50), gives for 2,000 sentences) instead of 50,
  and thrifty with random batches (`train.group_by_length: false`): what the grouping does to dev accuracy.

Clock, the same for all: a stopwatch from the first training step to the end of the last checkpoint (steps,
3 evaluations, 3 checkpoints, logging). Throughput = real (non-padding) training tokens / that time. Model
loading, data reading and tokenisation are outside it, for both: the table shows each worker process's wall
time and the part outside the loop (imports, reading, loading, tokenising; after the loop, thrifty writes its
model folder and plots). The older per-step count with MFU
is kept in results/train_throughput_unequal_2026-11-26.md.

The table is one per CPU model (its bf16/int8 flags beside it): figures from different machines are never pooled.
The older all-fp32 table (thrifty before auto chose bf16) is kept in results/train_throughput_fp32_2026-11-27.md, and
the same four systems with thrifty still drawing PyTorch's dropout masks (before models/fast_dropout.py) in
results/train_throughput_torch_dropout_2026-12-07.md; the first bf16 rounds (before thrifty kept freed memory and
applied its dropout masks as bytes) in results/train_throughput_bf16_2026-12-07.md.

What differs by design: thrifty's own loop (batches grouped in windows of 50 batches as the grouped Trainer,
fused AdamW, the last layer computed for [CLS] only, cheaper dropout masks on a CPU, freed memory kept for reuse, a
checkpoint of the trainable state). Each run is a fresh
process, the order alternated per seed; results are appended to benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (REPO, by_cpu, compare, head_by_cpu, median_of, paired_ratios, per_seed, spread, sst2_sample_file,
                    table_by_cpu, thrifty_classification, trainer_classification)

SYSTEMS = ("thrifty", "thrifty-fp32", "trainer-grouped", "trainer-grouped-bf16", "trainer", "thrifty-window15",
           "thrifty-random", "thrifty-torch-dropout", "trainer-grouped-bf16-kept-memory")
TRAINERS = ("trainer-grouped", "trainer-grouped-bf16", "trainer", "trainer-grouped-bf16-kept-memory")
EXAMPLES, EPOCHS, MAX_LENGTH = 2000, 3, 64
CONFIG = REPO / "examples" / "sst2.yaml"


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    from thrifty.inputs import as_config

    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["--data.train", str(sst2_sample_file(EXAMPLES, Path(tmp))), "--data.max_length", str(MAX_LENGTH),
                     "--train.epochs", str(EPOCHS), "--train.early_stopping_patience", "0"]
        if system == "thrifty-window15":
            import thrifty.data.batching

            thrifty.data.batching.GROUP_WINDOW_BATCHES = 15
        if system.startswith("thrifty"):
            extra = ["--train.group_by_length", "false"] if system == "thrifty-random" else []
            extra += ["--train.precision", "fp32"] if system == "thrifty-fp32" else []
            extra += ["--train.fast_dropout", "false"] if system == "thrifty-torch-dropout" else []
            return thrifty_classification(str(CONFIG), seed, overrides + extra)
        config = as_config(str(CONFIG), overrides + ["--data.test", "null"])
        if system.endswith("-kept-memory"):  # what thrifty does to glibc's malloc, done for the Trainer too
            from thrifty.models.allocator import keep_freed_memory

            assert keep_freed_memory(), "glibc's malloc thresholds could not be set here"
        return trainer_classification(config, seed, max_length=MAX_LENGTH, epochs=EPOCHS,
                                      grouped=system.startswith("trainer-grouped"), bf16="-bf16" in system)


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    for r in saved["runs"]:
        r["tokens_per_second"] = r["real_tokens"] / r["loop_wall_seconds"]
        r["padding"] = 1 - r["real_tokens"] / r["padded_tokens"]
    lines = head_by_cpu("Training throughput at equal settings: thrifty vs Trainer, fp32 and bf16",
                        "python benchmarks/train_throughput.py --seeds 0,1,2,3,4", saved,
                        f"SST-2, {EXAMPLES:,} training sentences, {EPOCHS} epochs, batch 32, max_length {MAX_LENGTH}, "
                        "evaluation + checkpoint each epoch; the clock runs from the first step to the end of the last "
                        "checkpoint. Median (min-max) over seeds.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["system", "precision", "seeds", "loop seconds", "real tokens/s", "padding",
                                          "best dev accuracy (per seed)", "process s", "outside the loop s"])
        for system in SYSTEMS:
            rs = [r for r in runs if r["system"] == system]
            if not rs:
                continue
            precisions = "/".join(sorted({r.get("precision", "fp32") for r in rs}))
            lines.append(f"| {system} | {precisions} | {', '.join(str(r['seed']) for r in rs)} | "
                         f"{spread([r['loop_wall_seconds'] for r in rs], '{:.1f}')} | "
                         f"{spread([r['tokens_per_second'] for r in rs], '{:,.0f}')} | "
                         f"{spread([100 * r['padding'] for r in rs], '{:.1f}')}% | {per_seed(rs, 'best_dev_accuracy')} | "
                         f"{spread([r['process_wall_seconds'] for r in rs])} | "
                         f"{spread([r['process_wall_seconds'] - r['loop_wall_seconds'] for r in rs], '{:.1f}')} |")
        base = median_of(runs, "thrifty", "tokens_per_second")
        ratios = [f"vs {s}: **{base / median_of(runs, s, 'tokens_per_second'):.2f}x** (seed by seed "
                  f"{spread(paired_ratios(runs, 'thrifty', s, lambda r: r['tokens_per_second']), '{:.2f}')})"
                  for s in (*TRAINERS, "thrifty-fp32", "thrifty-torch-dropout") if base and median_of(runs, s, "tokens_per_second")]
        if ratios:
            lines += ["", "thrifty's real tokens/s over the loop clock (medians) " + ", ".join(ratios) + "."]
        accuracy = {s: median_of(runs, s, "best_dev_accuracy") for s in ("thrifty", "thrifty-fp32")}
        if all(accuracy.values()):
            gap = 100 * (accuracy["thrifty"] - accuracy["thrifty-fp32"])
            lines += ["", f"Dev accuracy, thrifty as shipped - thrifty-fp32 (medians): {gap:+.2f} points (the bf16 "
                          "guard's floor: within 0.5 point)."]
    return lines


if __name__ == "__main__":
    compare(__file__, "train_throughput", SYSTEMS, run_system, summarise,
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
            default_systems=SYSTEMS[:4] + ("trainer-grouped-bf16-kept-memory",), settings={"examples": EXAMPLES, "epochs": EPOCHS, "max_length": MAX_LENGTH, "config": "examples/sst2.yaml"})
