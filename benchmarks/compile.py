"""Does ``torch.compile`` pay off for fine-tuning on this CPU? Eager vs compiled, same steps, one process each.

    python benchmarks/compile.py [--examples 2000] [--threads 2]

all-MiniLM-L6-v2, full fine-tuning steps (forward, backward, fused AdamW) over the length-grouped SST-2 batches
thrifty uses (batch 32, max length 128), fp32. Compiled variants: inductor with dynamic shapes (one graph
for all sequence lengths), and inductor with lengths padded to multiples of 16 (fewer distinct shapes,
more padding). Reported: compile time (the first pass over the batches, minus an eager pass), and the
steady-state time of a second pass. Each variant runs in a fresh process. Results:
benchmarks/results/compile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WorkerFailed, machine, read_sst2, run_worker, write_results  # noqa: E402

VARIANTS = ("eager", "compile-dynamic", "compile-pad16")
BATCH, MAX_LENGTH = 32, 128


def worker(variant: str, examples: int) -> dict:
    import torch

    from thrifty.data.batching import collate, training_batches
    from thrifty.data.tokenize import encode
    from thrifty.models.loading import default_model_dir, load_classifier, load_tokenizer
    from thrifty.optimization.optim import make_optimizer

    texts, labels = read_sst2("stsa.binary.train")
    pick = random.Random(0).sample(range(len(texts)), examples)
    texts, labels = [texts[i] for i in pick], [labels[i] for i in pick]
    path = str(default_model_dir())
    tokenizer = load_tokenizer(path)
    torch.manual_seed(0)
    model, _ = load_classifier(path, ["0", "1"], pad_token_id=tokenizer.pad_token_id)
    ids = encode(tokenizer, texts, MAX_LENGTH)
    batches = [collate(ids, idx, tokenizer.pad_token_id, labels)
               for idx in training_batches([len(x) for x in ids], BATCH, 0, 0, True)]
    if variant == "compile-pad16":
        def pad16(b):
            width = -(-b["input_ids"].shape[1] // 16) * 16
            extra = width - b["input_ids"].shape[1]
            return {"input_ids": torch.nn.functional.pad(b["input_ids"], (0, extra), value=tokenizer.pad_token_id),
                    "attention_mask": torch.nn.functional.pad(b["attention_mask"], (0, extra)), "labels": b["labels"]}
        batches = [pad16(b) for b in batches]
    optimizer = make_optimizer(model, 1e-4, 0.01, torch.device("cpu"))
    forward = model
    if variant.startswith("compile"):
        forward = torch.compile(model, dynamic=variant == "compile-dynamic")
    model.train()

    def one_pass() -> tuple[float, float]:
        start, loss_sum = time.perf_counter(), 0.0
        for b in batches:
            labels_ = b["labels"]
            logits = forward(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(logits, labels_)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += float(loss)
        return time.perf_counter() - start, loss_sum / len(batches)

    first, first_loss = one_pass()
    second, second_loss = one_pass()
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    return {"first_pass_seconds": round(first, 2), "second_pass_seconds": round(second, 2),
            "mean_loss_first_pass": round(first_loss, 4), "real_tokens": real, "padded_tokens": padded,
            "shapes": len({tuple(b["input_ids"].shape) for b in batches})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, args.examples)))
        return
    rows = {}
    for variant in VARIANTS:
        try:
            rows[variant] = run_worker(__file__, ["--worker", variant, "--examples", str(args.examples)], args.threads)
        except WorkerFailed as exc:
            rows[variant] = {"error": str(exc).splitlines()[0]}
            print(f"{variant}: failed: {rows[variant]['error']}", flush=True)
            continue
        print(f"{variant}: {rows[variant]}", flush=True)
    eager = rows["eager"]
    for variant, row in rows.items():
        if "error" in row:
            continue
        row["real_tokens_per_second"] = round(row["real_tokens"] / row["second_pass_seconds"], 1)
        row["compile_seconds"] = round(row["first_pass_seconds"] - eager["second_pass_seconds"], 1) if variant != "eager" else 0.0
        row["speedup_vs_eager"] = round(eager["second_pass_seconds"] / row["second_pass_seconds"], 3)
        saved = eager["second_pass_seconds"] - row["second_pass_seconds"]
        row["break_even_epochs"] = round(row["compile_seconds"] / saved, 1) if saved > 0 and variant != "eager" else None
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
              "setup": {"model": "all-MiniLM-L6-v2", "examples": args.examples, "batch_size": BATCH, "max_length": MAX_LENGTH,
                        "precision": "fp32"}, "variants": rows}
    lines = [f"# torch.compile vs eager, full fine-tuning on the CPU ({result['date']})", "",
             f"{result['machine']['cpu']}, {args.threads} threads, torch {result['machine']['torch']}; all-MiniLM-L6-v2, "
             f"{args.examples} SST-2 sentences per pass, batch {BATCH}, length-grouped, fp32.", "",
             "| variant | shapes | compile s | steady pass s | real tokens/s | vs eager | epochs to break even |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for variant, row in rows.items():
        if "error" in row:
            lines.append(f"| {variant} | failed: {row['error']} | | | | | |")
            continue
        lines.append(f"| {variant} | {row['shapes']} | {row['compile_seconds']:.1f} | {row['second_pass_seconds']:.1f} | "
                     f"{row['real_tokens_per_second']:,.0f} | {row['speedup_vs_eager']:.2f}x | {row['break_even_epochs'] or '-'} |")
    write_results("compile", result, lines)


if __name__ == "__main__":
    main()
