"""Inference throughput: thrifty's predictor vs `transformers.pipeline("text-classification")`.

    python benchmarks/inference.py        # SST-2 test (1,821 sentences), 2 rounds (~3 min)

The same fine-tuned model folder (a short full fine-tuning run of all-MiniLM-L6-v2 on SST-2, made first)
serves all three; the texts are the published SST-2 test sentences; model loading is not timed. The
systems alternate within each round; the best round of each is reported, with all rounds beside it.
Results: benchmarks/results/inference.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import SST2, machine, read_sst2, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import thrifty
    from thrifty.inference.predictor import Predictor
    from transformers import pipeline

    texts, int_labels = read_sst2("stsa.binary.test")
    labels = [str(y) for y in int_labels]
    with tempfile.TemporaryDirectory() as tmp:
        run = thrifty.train({"data": {"train": str(SST2 / "stsa.binary.train"), "validation": str(SST2 / "stsa.binary.dev"),
                                      "max_train_examples": 1000},
                             "train": {"epochs": 1, "num_threads": args.threads}, "tracking": {"tensorboard": False}},
                            output=Path(tmp) / "run", progress=False).run_dir
        predictor = Predictor.load(run)
        pipe_default = pipeline("text-classification", model=str(run / "model"), device="cpu")
        pipe_batched = pipeline("text-classification", model=str(run / "model"), device="cpu", batch_size=32)

        systems = {
            "thrifty": lambda: [p["label"] for p in predictor.predict(texts)],
            "pipeline-default": lambda: [p["label"] for p in pipe_default(texts)],
            "pipeline-batch32": lambda: [p["label"] for p in pipe_batched(texts)],
        }
        timings: dict[str, list[float]] = {name: [] for name in systems}
        accuracy = {}
        for r in range(args.rounds):
            order = list(systems) if r % 2 == 0 else list(reversed(systems))
            for name in order:
                start = time.perf_counter()
                predicted = systems[name]()
                timings[name].append(time.perf_counter() - start)
                accuracy[name] = sum(p == y for p, y in zip(predicted, labels)) / len(labels)
                print(f"round {r + 1} {name}: {timings[name][-1]:.2f}s", flush=True)

    rows = {name: {"seconds": round(min(t), 3), "seconds_all_rounds": [round(x, 3) for x in t],
                   "texts_per_second": round(len(texts) / min(t), 1), "test_accuracy": round(accuracy[name], 4)}
            for name, t in timings.items()}
    ratios = {f"thrifty_vs_{n}": round(rows["thrifty"]["texts_per_second"] / rows[n]["texts_per_second"], 2)
              for n in rows if n != "thrifty"}
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "texts": len(texts), "machine": machine(args.threads),
           "systems": rows, "ratios": ratios}
    lines = [f"# Inference, thrifty vs pipeline ({out['date']})", "",
             f"SST-2 test, {len(texts)} sentences, all-MiniLM-L6-v2 fine-tuned; {out['machine']['cpu']}, {args.threads} threads, torch {out['machine']['torch']}.", "",
             "| system | seconds | texts/s | test accuracy (same model) |", "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['seconds']:.2f} | {row['texts_per_second']:.1f} | {row['test_accuracy']:.4f} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratios.items())]
    write_results("inference", out, lines)


if __name__ == "__main__":
    main()
