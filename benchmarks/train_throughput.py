"""Training throughput and MFU: thrifty vs Hugging Face Trainer, side by side in one run.

    python benchmarks/train_throughput.py            # quick: 2,000 SST-2 sentences, 1 epoch, 1 round (~5 min)
    python benchmarks/train_throughput.py --full     # the whole SST-2 train set, 3 rounds

Same machine, data, model (all-MiniLM-L6-v2), batch size 32, learning rate 1e-4, max length 128, one
epoch, fp32. Systems run one after another in fresh processes with the same thread count, in an order
that alternates between rounds so machine noise hits all of them. Each trained model is scored on the
SST-2 dev set with the same evaluation code, so speed is compared at equal accuracy.

- trainer-default: ``Trainer`` + ``DataCollatorWithPadding``, default options, as a user would set it up
- trainer-grouped: the same with ``train_sampling_strategy="group_by_length"``
- thrifty: ``thrifty.train`` (length-grouped batches, its own loop)

MFU counts model FLOPs honestly: 6 x non-embedding parameters per real (non-pad) token, plus attention
(12 x layers x hidden x length^2 per sequence for forward + backward), divided by the fp32 matmul peak
measured in the same run. Padded tokens are waste, not work. thrifty skips work the classifier never reads
(the last layer for all but the first token), so for it `mfu` (the nominal count, the issue's definition)
overstates the arithmetic done; `mfu_executed` counts only the FLOPs really executed. Results: benchmarks/results/train_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, SST2, machine, read_sst2, write_results

SYSTEMS = ("trainer-default", "thrifty", "trainer-grouped")
BATCH, LR, MAX_LENGTH, SEED = 32, 1e-4, 128, 0


def load_lines(name: str) -> list[tuple[int, str]]:
    texts, labels = read_sst2(name)
    return list(zip(labels, texts))


def subset(n: int | None) -> list[tuple[int, str]]:
    rows = load_lines("stsa.binary.train")
    if n is not None and n < len(rows):
        rows = random.Random(SEED).sample(rows, n)
    return rows


# ------------------------------------------------------------------------------------------------ workers

def worker(system: str, n: int | None, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    rows = subset(n)
    if system == "thrifty":
        return run_thrifty(rows)
    return run_trainer(rows, grouped=system == "trainer-grouped")


def dev_accuracy(model, tokenizer) -> float:
    import torch

    from thrifty.data.tokenize import encode
    from thrifty.evaluation.evaluate import evaluate_split

    dev = load_lines("stsa.binary.dev")
    ids = encode(tokenizer, [t for _, t in dev], MAX_LENGTH)
    metrics = evaluate_split(model, ids, [y for y, _ in dev], ["0", "1"], tokenizer.pad_token_id, 128, torch.device("cpu"))
    return metrics["accuracy"]


def run_trainer(rows, grouped: bool) -> dict:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    set_seed(SEED)
    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    encoded = tokenizer([t for _, t in rows], truncation=True, max_length=MAX_LENGTH)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": y}
               for ids, mask, (y, _) in zip(encoded["input_ids"], encoded["attention_mask"], rows)]
    extra = {"train_sampling_strategy": "group_by_length"} if grouped else {}
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR, num_train_epochs=1,
                                 report_to=[], save_strategy="no", disable_tqdm=True, seed=SEED, use_cpu=True, **extra)
        collator = DataCollatorWithPadding(tokenizer)
        padded = 0

        def counting_collator(features):  # counts the padded tokens the Trainer really computes on
            nonlocal padded
            batch = collator(features)
            padded += batch["input_ids"].numel()
            return batch

        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting_collator)
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
    real = sum(len(ids) for ids in encoded["input_ids"])
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return {"seconds": seconds, "trainer_runtime": output.metrics["train_runtime"], "examples": len(rows),
            "real_tokens": real, "padded_tokens": padded, "lengths": lengths,
            "dev_accuracy": dev_accuracy(model.eval(), tokenizer)}


def run_thrifty(rows) -> dict:
    import thrifty
    from thrifty.models.loading import default_model_dir, load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{y} {t}\n" for y, t in rows), encoding="utf-8")
        config = {
            "data": {"train": str(train_file), "validation": str(SST2 / "stsa.binary.dev"), "max_length": MAX_LENGTH,
                     "duplicates": "keep", "conflicts": "keep", "leakage": "keep"},  # train on exactly the same rows
            "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": LR, "seed": SEED, "warmup_ratio": 0.0,
                      "weight_decay": 0.0, "num_threads": 0},
            "tracking": {"tensorboard": False},
        }
        start = time.perf_counter()
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - start
        tokenizer = load_tokenizer(str(default_model_dir()))
        lengths = [len(ids) for ids in tokenizer([t for _, t in rows], truncation=True, max_length=MAX_LENGTH)["input_ids"]]
        train = result.metrics["train"]
        return {"seconds": train["step_seconds"], "wall_with_setup_and_eval": wall, "examples": train["examples"],
                "real_tokens": train["tokens"], "padded_tokens": round(train["tokens"] / (1 - train["padding_fraction"])),
                "lengths": lengths, "dev_accuracy": result.metrics["validation"]["accuracy"]}


# ------------------------------------------------------------------------------------------------ driver

def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def model_flops(lengths: list[int], pruned_last_layer: bool = False) -> float:
    """The issue's count: 6 x non-embedding parameters per real token + attention. With `pruned_last_layer`,
    the FLOPs really executed when the last layer runs for the first token only (thrifty's default): that
    layer's query, output projection and feed-forward for one token per text, its attention for one query."""
    from transformers import AutoConfig

    from thrifty.models.loading import default_model_dir

    config = AutoConfig.from_pretrained(default_model_dir())
    d, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_layer = 4 * d * d + 2 * d * inter  # attention projections + feed-forward weights
    non_embedding = layers * per_layer + d * d + 2 * d  # + pooler + classifier
    nominal = sum(6 * non_embedding * n + 12 * layers * d * n * n for n in lengths)
    if not pruned_last_layer:
        return nominal
    per_token_skipped = 2 * d * d + 2 * d * inter  # query + output projection + feed-forward
    return nominal - sum(6 * per_token_skipped * (n - 1) + 12 * d * n * (n - 1) for n in lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="all 6,920 sentences, 3 rounds")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.n, args.threads)))
        return
    n = None if args.full else 2000
    rounds = args.rounds or (3 if args.full else 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    peaks = []
    for r in range(rounds):
        order = SYSTEMS if r % 2 == 0 else tuple(reversed(SYSTEMS))
        for system in order:
            peaks.append(matmul_peak(args.threads))
            command = [sys.executable, __file__, "--worker", system, "--threads", str(args.threads)]
            if n is not None:
                command += ["--n", str(n)]
            out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{system} failed:\n{out.stderr[-3000:]}")
            result = json.loads(line[len("RESULT "):])
            print(f"round {r + 1} {system}: {result['seconds']:.1f}s, dev accuracy {result['dev_accuracy']:.4f}", flush=True)
            runs[system].append(result)
    peak = max(peaks)
    summary = {}
    for system, results in runs.items():
        best = min(results, key=lambda x: x["seconds"])  # least disturbed run
        flops = model_flops(best["lengths"])
        summary[system] = {
            "seconds": round(best["seconds"], 2),
            "seconds_all_rounds": [round(x["seconds"], 2) for x in results],
            "examples_per_second": round(best["examples"] / best["seconds"], 2),
            "real_tokens_per_second": round(best["real_tokens"] / best["seconds"], 1),
            "padding_fraction": round(1 - best["real_tokens"] / best["padded_tokens"], 4),
            "model_tflops": round(flops / 1e12, 3),
            "mfu": round(flops / best["seconds"] / peak, 4),
            "mfu_executed": round(model_flops(best["lengths"], pruned_last_layer=system == "thrifty") / best["seconds"] / peak, 4),
            "dev_accuracy": [round(x["dev_accuracy"], 4) for x in results],
        }
    base = summary["thrifty"]["real_tokens_per_second"]
    ratios = {f"thrifty_vs_{s}": round(base / summary[s]["real_tokens_per_second"], 3) for s in SYSTEMS if s != "thrifty"}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "mode": "full" if args.full else "quick",
              "setup": {"examples": n or "all", "epochs": 1, "batch_size": BATCH, "learning_rate": LR,
                        "max_length": MAX_LENGTH, "rounds": rounds, "precision": "fp32"},
              "machine": machine(args.threads), "matmul_peak_gflops": round(peak / 1e9, 1),
              "systems": summary, "ratios": ratios}
    write_results("train_throughput" + ("_full" if args.full else ""), result, report(result))


def report(result: dict) -> list[str]:
    setup = result["setup"]
    lines = [f"# Training throughput, thrifty vs Trainer ({result['date']}, {result['mode']})", "",
             f"{result['machine']['cpu']}, {result['machine']['threads']} threads, torch {result['machine']['torch']}; "
             f"SST-2 train ({setup['examples']} sentences), 1 epoch, batch {setup['batch_size']}, lr {setup['learning_rate']:g}, "
             f"max length {setup['max_length']}, fp32, best of {setup['rounds']} round(s); "
             f"matmul peak {result['matmul_peak_gflops']} GFLOP/s.", "",
             "| system | train s | examples/s | real tokens/s | padding | MFU (nominal) | MFU (executed) | dev accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, row in result["systems"].items():
        lines.append(f"| {system} | {row['seconds']:.1f} | {row['examples_per_second']:.1f} | "
                     f"{row['real_tokens_per_second']:,.0f} | {100 * row['padding_fraction']:.1f}% | "
                     f"{100 * row['mfu']:.1f}% | {100 * row.get('mfu_executed', row['mfu']):.1f}% | "
                     f"{', '.join(f'{a:.3f}' for a in row['dev_accuracy'])} |")
    lines += ["", "Ratios (real tokens/s): " + ", ".join(f"{k} = {v:.2f}x" for k, v in result["ratios"].items()),
              "", "MFU (nominal) is the issue's count (6 x non-embedding parameters per real token + attention); "
              "MFU (executed) counts only the FLOPs really run: thrifty computes the last layer for the first token "
              "alone, the one position the classifier reads."]
    return lines


if __name__ == "__main__":
    main()
