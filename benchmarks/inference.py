"""Prediction throughput: thrifty's predictor vs `transformers.pipeline("text-classification")` at batch sizes 1-256.

    python benchmarks/inference.py --seeds 0,1,2        # 3 rounds, ~6 min on 2 cores

One fine-tuned model folder serves every system: full fine-tuning of all-MiniLM-L6-v2 on SST-2's 6,920 training
sentences, 2 epochs (dev accuracy in its metrics.json), made once in benchmarks/runs/sst2_model. The texts are the
published SST-2 test sentences (1,821), cut at the same max_length on every side (the model's, from its
manifest). Each system runs in a fresh process per round (a "seed" here is a round), the order alternated;
the process loads the model, predicts 64 texts to warm up, then the stopwatch times predicting all 1,821.

- thrifty: `Predictor.load(folder, lanes=None).predict(texts)`, as `thrifty predict` runs (its default batch of 128,
  sorted by length, passes on one lane per thread, results in input order, the last layer for [CLS] only);
- pipeline-bN: `pipeline("text-classification", model=folder, batch_size=N)` with `truncation=True,
  max_length=...`; N = 1 is the pipeline's default;
- thrifty-onnx, thrifty-onnx-int8: `Predictor.load(folder, backend="onnx" / "onnx-int8", lanes=None)`, the graphs `thrifty export
  --format onnx --quantize int8` wrote (made once, with --force so the int8 graph exists whatever its agreement;
  the agreement is measured here: the share of SST-2 test sentences given the PyTorch predictor's label);
- thrifty-torch-bf16: `Predictor.load(folder, backend="torch-bf16", lanes=None)`, the same PyTorch model with bf16 weights (a CPU
  with AMX or AVX512-BF16 runs them in hardware; refused elsewhere); its agreement measured the same way.

What differs by design is thrifty's predictor itself (sorted batches, the pruned last layer). Results are
appended to benchmarks/results/inference.json; the .md compares thrifty with the pipeline's best batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import REPO, SST2, by_cpu, compare, head_by_cpu, paired_ratios, read_sst2, spread, table_by_cpu

SYSTEMS = ("thrifty", "pipeline-b1", "pipeline-b32", "pipeline-b64", "pipeline-b128", "pipeline-b256", "thrifty-onnx",
           "thrifty-onnx-int8", "thrifty-torch-bf16")
DEFAULT_SYSTEMS = SYSTEMS[:6]  # the other backends are asked for by name (--systems thrifty,thrifty-onnx,...)
MODEL = REPO / "benchmarks" / "runs" / "sst2_model"


def make_model(args: argparse.Namespace) -> None:
    """The model every system serves, made once and reused by every round (and by serve_load.py), with its ONNX
    graphs when a chosen system needs them."""
    if not (MODEL / "model" / "thrifty.json").exists():
        import thrifty

        thrifty.train({"data": {"train": str(SST2 / "stsa.binary.train"), "validation": str(SST2 / "stsa.binary.dev")},
                       "train": {"epochs": 2, "num_threads": args.threads}, "tracking": {"tensorboard": False}},
                      output=MODEL, progress=False, overwrite=True)
    if "onnx" in getattr(args, "systems", "") and not (MODEL / "model" / "onnx" / "model.int8.onnx").exists():
        from thrifty.inference.onnx_backend import export_onnx

        export_onnx(MODEL, quantize="int8", force=True)


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    from thrifty.inference.predictor import Predictor

    texts, int_labels = read_sst2("stsa.binary.test")
    max_length = Predictor.load(MODEL).max_length
    if system.startswith("thrifty"):
        predictor = Predictor.load(MODEL, backend=system.split("-", 1)[1] if "-" in system else "torch", lanes=None)

        def predict(batch):
            return [p["label"] for p in predictor.predict(batch)]
    else:
        from transformers import pipeline

        from thrifty.models.loading import quiet_transformers

        quiet_transformers()
        pipe = pipeline("text-classification", model=str(MODEL / "model"), device="cpu",
                        batch_size=int(system.split("-b")[1]))

        def predict(batch):
            return [p["label"] for p in pipe(batch, truncation=True, max_length=max_length)]
    predict(texts[:64])  # warm-up: first-call costs are not prediction throughput
    start = time.perf_counter()
    predicted = predict(texts)
    seconds = time.perf_counter() - start
    result = {"seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1), "max_length": max_length,
              "texts": len(texts),
              "test_accuracy": round(sum(p == str(y) for p, y in zip(predicted, int_labels)) / len(texts), 4)}
    if system.startswith("thrifty-"):  # after the stopwatch: how often this backend gives PyTorch fp32's label
        reference = [p["label"] for p in Predictor.load(MODEL).predict(texts)]
        result["label_agreement_with_pytorch"] = round(sum(a == b for a, b in zip(predicted, reference)) / len(texts), 4)
    return result


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    lines = head_by_cpu("Prediction throughput: thrifty vs the transformers pipeline",
                        "python benchmarks/inference.py --seeds 6,7,8 --systems thrifty,pipeline-b1,pipeline-b32,pipeline-b64,"
                        "pipeline-b128,pipeline-b256,thrifty-onnx,thrifty-onnx-int8,thrifty-torch-bf16", saved,
                        "SST-2 test, 1,821 sentences, the same fine-tuned all-MiniLM-L6-v2 folder (trained on each machine) "
                        "and max_length on every side; median (min-max) over rounds.")
    for cpu, runs in by_cpu(saved).items():
        lines += summarise_runs(cpu, runs)
    return lines


def summarise_runs(cpu: str, runs: list[dict]) -> list[str]:
    """One machine's table and the ratios of its rounds."""
    lines = table_by_cpu(cpu, runs, ["system", "rounds", "seconds", "texts/s", "test accuracy"])
    rates = {}
    for system in SYSTEMS:
        rs = [r for r in runs if r["system"] == system]
        if not rs:
            continue
        rates[system] = statistics.median(r["texts_per_second"] for r in rs)
        lines.append(f"| {system} | {len(rs)} | {spread([r['seconds'] for r in rs], '{:.2f}')} | "
                     f"{spread([r['texts_per_second'] for r in rs], '{:.0f}')} | {rs[0]['test_accuracy']:.4f} |")
    # Ratios only from rounds both sides ran (the same session, the same machine): the median of the paired ratios
    thrifty_seeds = {r["seed"] for r in runs if r["system"] == "thrifty"}
    paired_pipes = {}  # each pipeline batch size: its median texts/s over thrifty's rounds
    for system in (s for s in rates if s.startswith("pipeline")):
        paired = [r["texts_per_second"] for r in runs if r["system"] == system and r["seed"] in thrifty_seeds]
        if paired:
            paired_pipes[system] = statistics.median(paired)
    if paired_pipes:
        best = max(paired_pipes, key=paired_pipes.get)
        ratios = paired_ratios(runs, "thrifty", best, lambda r: r["texts_per_second"])
        default = paired_ratios(runs, "thrifty", "pipeline-b1", lambda r: r["texts_per_second"])
        lines += ["", f"thrifty vs the pipeline's best batch size in the same rounds ({best}): "
                      f"**{statistics.median(ratios):.2f}x** the texts/s (median of {len(ratios)} rounds, "
                      f"{min(ratios):.2f}-{max(ratios):.2f}x)"
                      + (f"; vs its default (pipeline-b1): {statistics.median(default):.2f}x." if default else ".")]
    for onnx in ("thrifty-onnx", "thrifty-onnx-int8", "thrifty-torch-bf16"):
        ratios = paired_ratios(runs, onnx, "thrifty", lambda r: r["texts_per_second"])
        if ratios:
            agreement = min(r["label_agreement_with_pytorch"] for r in runs if r["system"] == onnx)
            lines.append(f"\n{onnx}: **{statistics.median(ratios):.2f}x** thrifty's PyTorch texts/s in the same rounds "
                         f"(median of {len(ratios)} rounds, {min(ratios):.2f}-{max(ratios):.2f}x); the PyTorch label on {agreement:.2%} of the SST-2 "
                         "test sentences.")
    return lines


if __name__ == "__main__":
    compare(__file__, "inference", SYSTEMS, run_system, summarise,
            argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
            settings={"texts": "SST-2 test", "model": str(MODEL.relative_to(REPO))}, prepare=make_model,
            default_systems=DEFAULT_SYSTEMS)
