"""The frozen-layer cache, like for like: `freeze` with the cache vs `freeze` recomputing, and `freeze` vs `full`.

    python benchmarks/frozen_cache.py --seeds 0,1,2        # ~4 min per seed on 2 cores

`examples/sst2.yaml` on a seeded sample of 2,000 SST-2 training sentences, 3 epochs, max_length 64, the
published dev set; evaluation and a checkpoint each epoch, the best epoch kept. Same recipe for all three
(lr 1e-4, batch 32, warmup 6%, weight decay 0.01), only the strategy differs:

- freeze-cached: `strategy.name: freeze`, the bottom half (3 of 6 layers) frozen, its default; `train.cache_frozen_layers: true`
  (the default): the frozen layers' outputs computed once, before the first step, then read each epoch;
- freeze-recompute: the same with the cache off: the frozen layers run forward in every step;
- full: every layer trained.

Clock: thrifty's `loop_wall_seconds`, a stopwatch from the first step to the end of the last checkpoint,
plus the time to build the cache (so the cached run pays for building it). Each run a fresh process, the order
alternated per seed; results appended to benchmarks/results/frozen_cache.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import REPO, compare, median_of, paired_ratios, per_seed, spread, table_head, sst2_sample_file, thrifty_classification

SYSTEMS = ("freeze-cached", "freeze-recompute", "full")
EXAMPLES, EPOCHS, MAX_LENGTH = 2000, 3, 64
CONFIG = REPO / "examples" / "sst2.yaml"
STRATEGY = {"freeze-cached": ["--strategy.name", "freeze", "--train.cache_frozen_layers", "true"],
            "freeze-recompute": ["--strategy.name", "freeze", "--train.cache_frozen_layers", "false"],
            "full": ["--strategy.name", "full"]}


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return thrifty_classification(str(CONFIG), seed, [
            "--data.train", str(sst2_sample_file(EXAMPLES, Path(tmp))), "--data.max_length", str(MAX_LENGTH),
            "--train.epochs", str(EPOCHS), "--train.early_stopping_patience", "0", *STRATEGY[system]])


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    runs = saved["runs"]
    lines = table_head("The frozen-layer cache, like for like", "python benchmarks/frozen_cache.py --seeds 0,1,2", saved,
                       f"SST-2, {EXAMPLES:,} training sentences, {EPOCHS} epochs, batch 32, max_length {MAX_LENGTH}; whole "
                       "run from the first step to the last checkpoint, cache build included. Median (min-max) over seeds.",
                       ["system", "seeds", "loop seconds (cache build included)", "best dev accuracy (per seed)"])
    for system in SYSTEMS:
        rs = [r for r in runs if r["system"] == system]
        if rs:
            lines.append(f"| {system} | {', '.join(str(r['seed']) for r in rs)} | "
                         f"{spread([r['loop_wall_seconds'] for r in rs], '{:.1f}')} | "
                         f"{per_seed(rs, 'best_dev_accuracy')} |")
    t = {s: median_of(runs, s, "loop_wall_seconds") for s in SYSTEMS}
    a = {s: median_of(runs, s, "best_dev_accuracy") for s in SYSTEMS}
    if all(t.values()):
        seed_by_seed = spread(paired_ratios(runs, "freeze-recompute", "freeze-cached", lambda r: r["loop_wall_seconds"]),
                              "{:.2f}")
        lines += ["", f"Like for like, the cache makes a whole `freeze` run **{t['freeze-recompute'] / t['freeze-cached']:.2f}x** "
                      f"as fast (seed by seed {seed_by_seed}; medians: {t['freeze-recompute']:.1f} s recomputing, {t['freeze-cached']:.1f} s cached, the "
                      "same dev accuracy by construction: the cached features are the frozen layers' outputs).",
                  "", f"Different strategies: cached `freeze` takes {t['freeze-cached'] / t['full']:.2f}x the time of `full` "
                      f"({t['full'] / t['freeze-cached']:.2f}x as fast) at dev accuracy {a['freeze-cached']:.4f} against "
                      f"{a['full']:.4f} ({100 * (a['freeze-cached'] - a['full']):+.2f} points, medians)."]
    return lines


if __name__ == "__main__":
    compare(__file__, "frozen_cache", SYSTEMS, run_system, summarise,
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
            settings={"examples": EXAMPLES, "epochs": EPOCHS, "max_length": MAX_LENGTH, "config": "examples/sst2.yaml"})
