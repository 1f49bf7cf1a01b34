"""Where does a GPU training step of SmolLM2-135M spend its time? Ablations of thrifty's step vs Trainer.

    python benchmarks/gpu_step_profile.py --model FOLDER --data SST2_FOLDER [--out DIR]

At batch 32 and ~23 tokens per sentence a step of a 135M model is under a millisecond of GPU arithmetic,
so step time is host-side overhead (Python, dispatch, kernel launches, waits). This script times 60 steps
(after 10 warm-up steps) of the same model and batches in variants that each change one thing in the step,
then profiles thrifty's variant (top host-side operators). Weights may be random (only shapes matter
for time): a folder with config.json and the tokenizer is enough.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARMUP, STEPS, BATCH = 10, 60, 32


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_model(folder: Path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(folder, num_labels=2)
    config.pad_token_id = config.eos_token_id if config.pad_token_id is None else config.pad_token_id
    if (folder / "model.safetensors").exists():
        return AutoModelForSequenceClassification.from_pretrained(folder, config=config, dtype=torch.float32)
    return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)


def batches(tokenizer, rows):
    from thrifty.data.batching import collate, training_batches

    ids = [x for x in tokenizer([t for _, t in rows], truncation=True, max_length=128)["input_ids"]]
    labels = [y for y, _ in rows]
    order = training_batches([len(x) for x in ids], BATCH, 0, 0, True)
    return [collate(ids, idx, tokenizer.pad_token_id, labels) for idx in order[: WARMUP + STEPS]]


def time_variant(folder, cpu_batches, *, pin=True, sync_every=0, outer_autocast=True, profile=False) -> dict:
    import torch
    from accelerate import Accelerator

    from thrifty.optimization.optim import make_optimizer

    from accelerate.state import AcceleratorState

    torch.manual_seed(0)
    AcceleratorState._reset_state(reset_partial_state=True)  # earlier runs in this process set their own precision
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    model = load_model(folder)
    optimizer = make_optimizer(model, 5e-5, 0.0, accelerator.device)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    device = accelerator.device

    def step(cpu_batch, i):
        batch = {k: (v.pin_memory() if pin and device.type == "cuda" else v).to(device, non_blocking=pin) for k, v in cpu_batch.items()}
        labels = batch.pop("labels")
        if outer_autocast:
            with accelerator.autocast():
                logits = model(**batch).logits
        else:
            logits = model(**batch).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        accelerator.backward(loss)
        norm = accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if sync_every and i % sync_every == 0:
            float(loss), float(norm)

    for i, b in enumerate(cpu_batches[:WARMUP]):
        step(b, i)
    sync()
    start = time.perf_counter()
    for i, b in enumerate(cpu_batches[WARMUP:]):
        step(b, i)
    sync()
    ms = 1000 * (time.perf_counter() - start) / STEPS
    table = None
    if profile and torch.cuda.is_available():
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for i, b in enumerate(cpu_batches[WARMUP : WARMUP + 10]):
                step(b, i)
            sync()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    torch.cuda.empty_cache()
    return {"ms_per_step": round(ms, 2), "profile": table}


def time_thrifty(folder, rows, dev_file) -> float:
    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{y} {t}\n" for y, t in rows), encoding="utf-8")
        model_dir = folder
        if not (folder / "model.safetensors").exists():  # thrifty loads weights: save the random ones once
            model_dir = Path(tmp) / "model"
            load_model(folder).save_pretrained(model_dir)
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(folder).save_pretrained(model_dir)
        config = {"model": {"name": str(model_dir)},
                  "data": {"train": str(train_file), "validation": str(dev_file), "max_length": 128,
                           "duplicates": "keep", "conflicts": "keep", "leakage": "keep", "max_eval_examples": 64},
                  "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": 5e-5, "max_steps": WARMUP + STEPS,
                            "warmup_ratio": 0.0, "weight_decay": 0.0}, "tracking": {"tensorboard": False}}
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
    log = result.metrics["train"]
    return round(1000 * log["step_seconds"] / log["steps"], 2)


def time_trainer(folder, tokenizer, rows) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    import torch

    model = load_model(folder)
    enc = tokenizer([t for _, t in rows], truncation=True, max_length=128)
    data = [{"input_ids": i, "attention_mask": m, "labels": y} for i, m, (y, _) in zip(enc["input_ids"], enc["attention_mask"], rows)]
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (WARMUP, WARMUP + STEPS):
                sync()
                marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, learning_rate=5e-5, max_steps=WARMUP + STEPS,
                                 report_to=[], save_strategy="no", disable_tqdm=True, bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
                                 train_sampling_strategy="group_by_length")
        Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=[Clock()]).train()
    return round(1000 * (marks[WARMUP + STEPS] - marks[WARMUP]) / STEPS, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    import torch

    from thrifty.models.loading import load_tokenizer, quiet_transformers

    quiet_transformers()
    lines = [l.partition(" ") for l in (args.data / "stsa.binary.train").read_text().splitlines() if l.strip()]
    rows = random.Random(0).sample([(int(a), c) for a, _, c in lines], 3000)
    tokenizer = load_tokenizer(str(args.model))
    cpu_batches = batches(tokenizer, rows)
    results = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none", "torch": torch.__version__, "steps": STEPS, "batch": BATCH}
    variants = {
        "thrifty-like (pinned, no per-step sync, outer autocast)": {},
        "no pinned memory": {"pin": False},
        "sync every step": {"sync_every": 1},
        "no outer autocast": {"outer_autocast": False},
        "no pin, sync every step, no outer autocast": {"pin": False, "sync_every": 1, "outer_autocast": False},
    }
    for name, kw in variants.items():
        results[name] = time_variant(args.model, cpu_batches, **kw)["ms_per_step"]
        print(f"{name}: {results[name]} ms/step", flush=True)
    results["trainer grouped (bf16=True)"] = time_trainer(args.model, tokenizer, rows)
    print(f"trainer: {results['trainer grouped (bf16=True)']} ms/step", flush=True)
    results["thrifty.train"] = time_thrifty(args.model, rows, args.data / "stsa.binary.dev")
    print(f"thrifty.train: {results['thrifty.train']} ms/step", flush=True)
    profiled = time_variant(args.model, cpu_batches, profile=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_step_profile.json").write_text(json.dumps(results, indent=2) + "\n")
    if profiled["profile"]:
        print(profiled["profile"])
        (args.out / "gpu_step_profile.txt").write_text(profiled["profile"] + "\n")


if __name__ == "__main__":
    main()
