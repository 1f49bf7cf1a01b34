"""Peak memory of `strategy: fewshot` as the training set grows: pairs are drawn inside each batch, never listed.

    python benchmarks/fewshot_memory.py --sizes 1000,10000,50000

Each size runs in a fresh process (2 threads): Emotion's 16,000 training texts, cycled with a numbered suffix
to reach 50,000 distinct texts, 6 classes; all-MiniLM-L6-v2, batch 16, 30 steps, one evaluation at the end
(the head is then fitted on the embeddings of every training text), max_length 64. Reported: the process's peak
resident memory (ru_maxrss) and the training set's share of it. SetFit lists its pairs up front: at n examples
per class it holds ~n^2 of them (issue #628: 32 GB at 40k examples); it is not run here.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, machine, machine_line, run_worker  # noqa: E402

EMOTION = (REPO / ".." / "shared" / "data" / "emotion" / "train.txt").resolve()


def worker(size: int) -> dict:
    import thrifty

    lines = EMOTION.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        out = [header]
        for i in range(size):
            text, label = rows[i % len(rows)].rsplit(";", 1)
            out.append(f"{text} #{i // len(rows)};{label}" if i >= len(rows) else rows[i])
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = thrifty.train({"data": {"train": str(path), "text_column": "text", "label_column": "label_name",
                                         "validation_fraction": 0.01, "max_length": 64},
                                "strategy": {"name": "fewshot"},
                                "train": {"batch_size": 16, "max_steps": 30, "eval_every_steps": 30, "num_threads": 2,
                                          "learning_rate": 2e-4},
                                "tracking": {"tensorboard": False, "energy": False}},
                               output=Path(tmp) / "run", progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"size": size, "train_rows": result.metrics["train"]["examples"], "peak_rss_mib": round(peak / 1024, 1),
            "rss_before_training_mib": round(before / 1024, 1), "accuracy": result.metrics["validation"]["accuracy"],
            "steps": result.metrics["train"]["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker)), flush=True)
        return
    runs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        result = run_worker(__file__, ["--worker", str(size)], args.threads)
        result["date"] = time.strftime("%Y-%m-%d %H:%M")
        runs.append(result)
        print(f"{size}: peak {result['peak_rss_mib']} MiB", file=sys.stderr, flush=True)
    saved = {"machine": machine(args.threads), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fewshot_memory.json").write_text(json.dumps(saved, indent=2) + "\n")
    lines = ["# Few-shot: peak memory against training-set size", "",
             f"`python benchmarks/fewshot_memory.py --sizes {args.sizes}` (settings: the script's docstring). "
             f"{machine_line(saved['machine'])}", "",
             "| training texts | peak RSS MiB | RSS before training MiB | steps |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['size']:,} | {r['peak_rss_mib']:,.0f} | {r['rss_before_training_mib']:,.0f} | {r['steps']} |" for r in runs]
    (RESULTS / "fewshot_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
