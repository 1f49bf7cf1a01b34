"""What computing the last layer for the first token only saves: A/B in one process, alternating.

    python benchmarks/prune_last_layer.py [--examples 640] [--rounds 3] [--threads 2]

all-MiniLM-L6-v2, full fine-tuning steps (forward, backward, fused AdamW) over length-grouped SST-2
batches (batch 32), then prediction over the same texts; each round times the full last layer, then the
pruned one (`thrifty.models.first_token`), so drift in the machine hits both. Results:
benchmarks/results/prune_last_layer.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, read_sst2, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    import torch

    from thrifty.data.batching import collate, training_batches
    from thrifty.data.tokenize import encode
    from thrifty.evaluation.evaluate import predict_logits
    from thrifty.models import first_token
    from thrifty.models.loading import default_model_dir, load_classifier, load_tokenizer
    from thrifty.optimization.optim import make_optimizer

    torch.set_num_threads(args.threads)
    texts, labels = read_sst2("stsa.binary.train")
    pick = random.Random(0).sample(range(len(texts)), args.examples)
    texts, labels = [texts[i] for i in pick], [labels[i] for i in pick]
    path = str(default_model_dir())
    tokenizer = load_tokenizer(path)
    ids = encode(tokenizer, texts, 128)
    batches = [collate(ids, idx, tokenizer.pad_token_id, labels)
               for idx in training_batches([len(x) for x in ids], 32, 0, 0, True)]
    torch.manual_seed(0)
    model, _ = load_classifier(path, ["0", "1"], pad_token_id=tokenizer.pad_token_id)
    optimizer = make_optimizer(model, 1e-4, 0.01, torch.device("cpu"))

    def train_pass() -> float:
        model.train()
        start = time.perf_counter()
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            torch.nn.functional.cross_entropy(logits, b["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def predict_pass() -> float:
        start = time.perf_counter()
        predict_logits(model, ids, tokenizer.pad_token_id, 128, torch.device("cpu"))
        return time.perf_counter() - start

    train_pass()  # warm-up
    rounds = []
    for r in range(args.rounds):
        timed = {}
        # Alternated: even rounds run full first, odd rounds pruned first, so neither side always runs warmer.
        for pruned_side in ((False, True) if r % 2 == 0 else (True, False)):
            (first_token.enable if pruned_side else first_token.disable)(model)
            timed[pruned_side] = (train_pass(), predict_pass())
        full, pruned = timed[False], timed[True]
        rounds.append({"train_full": round(full[0], 2), "train_pruned": round(pruned[0], 2),
                       "predict_full": round(full[1], 2), "predict_pruned": round(pruned[1], 2)})
        print(rounds[-1], flush=True)
    train_ratios = [r["train_full"] / r["train_pruned"] for r in rounds]
    predict_ratios = [r["predict_full"] / r["predict_pruned"] for r in rounds]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
              "setup": {"model": "all-MiniLM-L6-v2", "examples": args.examples, "batch_size": 32, "precision": "fp32"},
              "rounds": rounds, "train_speedup": [round(x, 3) for x in train_ratios],
              "predict_speedup": [round(x, 3) for x in predict_ratios]}
    lines = [f"# Last layer for the first token only ({result['date']})", "",
             f"{result['machine']['cpu']}, {args.threads} threads, torch {result['machine']['torch']}; all-MiniLM-L6-v2, "
             f"{args.examples} SST-2 sentences, batch 32 (training) / 128 (prediction), fp32.", "",
             "| round | train full s | train pruned s | speed-up | predict full s | predict pruned s | speed-up |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, (r, t, p) in enumerate(zip(rounds, train_ratios, predict_ratios), 1):
        lines.append(f"| {i} | {r['train_full']} | {r['train_pruned']} | {t:.2f}x | {r['predict_full']} | "
                     f"{r['predict_pruned']} | {p:.2f}x |")
    write_results("prune_last_layer", result, lines)


if __name__ == "__main__":
    main()
