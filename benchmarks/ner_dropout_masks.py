"""WNUT-17 (full training file, fp32) with thrifty's dropout masks or PyTorch's: one run per call, dev and test F1.

    python benchmarks/ner_dropout_masks.py --seed 42                  # thrifty as it is (its counter-based masks)
    python benchmarks/ner_dropout_masks.py --seed 42 --torch-dropout  # `--train.fast_dropout false`
    python benchmarks/ner_dropout_masks.py --seed 42 --source ../old  # another checkout's thrifty (e.g. a commit under test)

`examples/wnut17.yaml` as shipped except `--train.precision fp32` (so the run is the same on every CPU: fp32 WNUT-17
runs of one seed gave the same F1 to the last digit on the AMD EPYC and the Intel Xeon), 2 threads. Used to find, with
`git bisect run`, the commit that moved thrifty's WNUT-17 F1 after 2026-11-27 (models/fast_dropout.py: a seeded
run draws other masks). Prints one RESULT line of JSON; the runs behind docs/token-classification.md are in
results/ner_dropout_masks_2026-12-08.log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--torch-dropout", action="store_true", help="PyTorch's dropout masks (train.fast_dropout false)")
parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the checkout whose src/thrifty runs (default: this one)")
args = parser.parse_args()
source = args.source.resolve()
sys.path.insert(0, str(source / "src"))
os.chdir(source)  # the example's data paths are relative to the checkout
import thrifty  # noqa: E402

assert Path(thrifty.__file__).resolve().is_relative_to(source), thrifty.__file__
overrides = ["--train.seed", str(args.seed), "--train.num_threads", "2", "--tracking.tensorboard", "false",
             "--tracking.energy", "false"]
if (source / "src/thrifty/models/precision.py").exists():  # older checkouts trained in fp32 only
    overrides += ["--train.precision", "fp32"]
if args.torch_dropout:
    overrides += ["--train.fast_dropout", "false"]
start = time.time()
with tempfile.TemporaryDirectory() as tmp:
    metrics = thrifty.train(source / "examples" / "wnut17.yaml", output=Path(tmp) / "run", progress=False,
                            overrides=overrides).metrics
print("RESULT", json.dumps({"source": str(source), "seed": args.seed, "torch_dropout": args.torch_dropout,
                            "dev_f1": metrics["validation"]["f1"], "test_f1": metrics["test"]["f1"],
                            "best_step": metrics["best"]["step"],
                            "dev_f1_per_epoch": [round(h["f1"], 4) for h in metrics["history"]],
                            "wall_seconds": round(time.time() - start, 1)}))
