"""Decoder SFT side by side: thrifty vs TRL's SFTTrainer, LoRA on SmolLM2-135M-Instruct, Emotion as instructions.

    python benchmarks/sft_vs_trl.py --seeds 0,1,2          # the comparison (each system in a fresh process per seed)
    python benchmarks/sft_vs_trl.py --gain                 # base vs fine-tuned answers on the whole test split

Data: `benchmarks/instructions.py --data emotion` ("Text: {tweet}\\nEmotion:" -> " {emotion}"), a seeded sample of
480 distinct training rows (none also in validation) and 500 validation rows, the same files for every system.
- thrifty: `thrifty.train`, task causal_lm, strategy lora.
- trl: `SFTTrainer` (TRL 1.x) with a peft LoraConfig, the recipe a TRL user writes for prompt/completion data, on
  TRL's defaults otherwise (random batches; `gradient_checkpointing=True`, SFTConfig's default).
- trl-fast: the same with TRL's fastest settings here: `train_sampling_strategy="group_by_length"` (batches of
  similar length, as thrifty's) and `gradient_checkpointing=False` (thrifty does not recompute activations either).
- trl-fast-bf16: trl-fast with `bf16=True` (autocast, fp32 weights): thrifty's precision on a CPU with bf16, where
  `train.precision: auto` picks bf16 autocast; in fp32 everywhere else.

Same for all: SmolLM2-135M-Instruct's fp32 weights (thrifty's conversion of the packaged GGUF), thrifty as shipped
(bf16 autocast where the CPU has bf16, recorded per run), TRL in fp32 unless named -bf16, LoRA r 16, alpha 32,
dropout 0.05 on q/k/v/o/gate/up/down projections, learning rate 5e-4, 1 epoch of batch 16 (30 steps), warmup 6% then
linear decay, weight decay 0.01 (not on biases/norms), clipping at 1.0, max length 128 (no row is longer), loss on
the completion and its end-of-sequence token only (TRL's default for prompt/completion), no packing, 2 threads,
one validation at the end, the adapter saved. Differs by design: thrifty computes the vocabulary logits only at the
positions the loss reads (transformers' `logits_to_keep`), and batches 30 batches' worth of rows at random (thrifty
groups by length above 50 batches; the Xeon rounds of 2026-11-29 ran before that, with grouped batches); trl pads
random batches and recomputes activations in the backward pass; trl-fast groups (its whole set sorted: one window of
50 batches) and recomputes nothing. Warmup: thrifty's first two
steps run at 1/3 and 2/3 of the learning rate, transformers' at 0 and 1/2, so over 30 steps thrifty's learning
rates add up to 3% more (15.5 against 15.0 peak-rate steps). Validation loss is the mean over
completion tokens, computed for TRL's model the way thrifty computes it (TRL's own eval_loss, a mean of per-batch
means, is recorded beside it). The clock compared is the training loop's, the same on every side: from the first
step to the end of the one validation pass (thrifty: `train.loop_wall_seconds`; TRL: `trainer.train()` and
`trainer.evaluate()`); the whole worker process (imports, data, model, training, validation, saving, and for TRL the
token-mean validation loss computed again) is reported beside it.

--gain writes each model's answers for the 2,000 test prompts (greedy, 4 new tokens, `thrifty generate`'s code) and
scores exact match against the label word: the base model, thrifty's and TRL's seed-0 models.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, by_cpu, compare, head_by_cpu, paired_ratios, spread, table_by_cpu, write_results  # noqa: E402

WORK = REPO / "benchmarks" / "runs" / "sft_vs_trl"
TRAIN_ROWS, VALIDATION_ROWS = 480, 500
RECIPE = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "learning_rate": 5e-4, "batch_size": 16, "epochs": 1,
          "max_length": 128, "warmup_ratio": 0.06, "weight_decay": 0.01, "max_grad_norm": 1.0,
          "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


SYSTEMS = ("thrifty", "trl", "trl-fast", "trl-fast-bf16")


def data_files() -> tuple[Path, Path, Path]:
    """The training sample, the validation sample and the whole test split, written once."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from instructions import write

    folder = write("emotion")
    train_file, val_file = WORK / "train.jsonl", WORK / "validation.jsonl"
    if not train_file.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        read = lambda name: [json.loads(l) for l in (folder / name).read_text(encoding="utf-8").splitlines()]
        validation = random.Random(0).sample(read("validation.jsonl"), VALIDATION_ROWS)
        held = {json.dumps(r, sort_keys=True) for r in validation}
        seen, pool = set(), []
        for row in read("train.jsonl"):
            key = json.dumps(row, sort_keys=True)
            if key not in seen and key not in held:
                seen.add(key)
                pool.append(row)
        for path, rows in ((train_file, random.Random(0).sample(pool, TRAIN_ROWS)), (val_file, validation)):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return train_file, val_file, folder / "test.jsonl"


def run_thrifty(seed: int) -> dict:
    import thrifty

    train_file, val_file, _ = data_files()
    out = WORK / f"thrifty-seed{seed}"
    config = {"task": "causal_lm", "model": {"name": "smollm2-135m"},
              "data": {"train": str(train_file), "validation": str(val_file), "max_length": RECIPE["max_length"]},
              "strategy": {"name": "lora", "lora_r": RECIPE["lora_r"], "lora_alpha": RECIPE["lora_alpha"],
                           "lora_dropout": RECIPE["lora_dropout"], "lora_target_modules": RECIPE["targets"]},
              "train": {"epochs": RECIPE["epochs"], "batch_size": RECIPE["batch_size"], "seed": seed,
                        "learning_rate": RECIPE["learning_rate"], "warmup_ratio": RECIPE["warmup_ratio"],
                        "weight_decay": RECIPE["weight_decay"], "max_grad_norm": RECIPE["max_grad_norm"]},
              "tracking": {"tensorboard": False, "energy": False}}
    result = thrifty.train(config, output=out, overwrite=True, progress=False)
    m = result.metrics
    rows = json.loads((out / "data_report.json").read_text())["sizes"]["train"]
    assert rows == TRAIN_ROWS, f"thrifty's cleaning changed the training rows: {rows}"
    return {"validation_loss": m["validation"]["loss"], "steps": m["train"]["steps"],
            "loop_wall_seconds": m["train"]["loop_wall_seconds"], "padding_fraction": m["train"]["padding_fraction"],
            "precision": m["model"]["precision"], "model": str(out)}


def run_trl(seed: int, fast: bool, bf16: bool = False) -> dict:
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from thrifty.models.loading import smollm2_dir

    train_file, val_file, _ = data_files()
    path = str(smollm2_dir())
    out = WORK / f"trl{'-fast' if fast else ''}{'-bf16' if bf16 else ''}-seed{seed}"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    train = datasets.load_dataset("json", data_files=str(train_file), split="train")
    validation = datasets.load_dataset("json", data_files=str(val_file), split="train")
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=RECIPE["batch_size"], per_device_eval_batch_size=16,
                     learning_rate=RECIPE["learning_rate"], num_train_epochs=RECIPE["epochs"], lr_scheduler_type="linear",
                     warmup_steps=RECIPE["warmup_ratio"], weight_decay=RECIPE["weight_decay"],
                     max_grad_norm=RECIPE["max_grad_norm"], seed=seed, data_seed=seed, max_length=RECIPE["max_length"],
                     completion_only_loss=True, packing=False, eval_strategy="no", save_strategy="no", logging_steps=10,
                     report_to="none", use_cpu=True, bf16=bf16, fp16=False, dataloader_num_workers=0,
                     train_sampling_strategy="group_by_length" if fast else "random",
                     gradient_checkpointing=not fast)
    peft = LoraConfig(r=RECIPE["lora_r"], lora_alpha=RECIPE["lora_alpha"], lora_dropout=RECIPE["lora_dropout"],
                      target_modules=RECIPE["targets"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
                         peft_config=peft)
    loop_start = time.perf_counter()
    trainer.train()
    own = trainer.evaluate()["eval_loss"]
    loop_wall = time.perf_counter() - loop_start
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    return {"validation_loss": token_mean_loss(trainer.model, trainer.eval_dataset, tokenizer.pad_token_id),
            "trl_eval_loss": own, "steps": trainer.state.global_step, "loop_wall_seconds": round(loop_wall, 2),
            "precision": "bf16" if bf16 else "fp32", "model": str(out / "model")}


def token_mean_loss(model, dataset, pad_id: int) -> float:
    """Cross-entropy summed over the completion tokens of every row, divided by their number (thrifty's formula)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    rows = sorted(dataset, key=lambda r: len(r["input_ids"]))
    with torch.inference_mode():
        for start in range(0, len(rows), 16):
            part = rows[start : start + 16]
            width = max(len(r["input_ids"]) for r in part)
            ids = torch.full((len(part), width), pad_id)
            mask, scored = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
            for i, r in enumerate(part):
                n = len(r["input_ids"])
                ids[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), 1
                scored[i, :n] = torch.tensor(r["labels"]) != -100  # TRL's completion mask, folded into labels
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target, keep = ids[:, 1:], scored[:, 1:]
            total += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def run_system(system: str, seed: int, args) -> dict:
    if system == "thrifty":
        return run_thrifty(seed)
    return run_trl(seed, fast=system.startswith("trl-fast"), bf16=system.endswith("-bf16"))


def summarise(saved: dict, args) -> list[str]:
    lines = head_by_cpu("Decoder SFT: thrifty vs TRL SFTTrainer (LoRA, SmolLM2-135M, Emotion instructions)",
                        "python benchmarks/sft_vs_trl.py --seeds 0,1,2,3,4", saved,
                        f"{TRAIN_ROWS} training rows, 1 epoch of batch 16, validation on {VALIDATION_ROWS} rows; median "
                        "(min-max) over seeds; each run a fresh process, order alternated per seed. The training loop's "
                        "clock (first step to the end of the validation pass) is the one compared.")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["system", "precision", "seeds", "validation loss (token mean)",
                                          "TRL's own eval_loss", "training loop s", "process wall s", "padding"])
        for system in SYSTEMS:
            mine = [r for r in runs if r["system"] == system]
            if mine:
                precision = ", ".join(sorted({r.get("precision") or "fp32" for r in mine}))
                lines.append(f"| {system} | {precision} | {len(mine)} | "
                             f"{spread([r['validation_loss'] for r in mine], '{:.4f}')} | "
                             f"{spread([r.get('trl_eval_loss') for r in mine], '{:.4f}')} | "
                             f"{spread([r['loop_wall_seconds'] for r in mine])} | "
                             f"{spread([r['process_wall_seconds'] for r in mine])} | "
                             f"{spread([r.get('padding_fraction') for r in mine], '{:.2f}')} |")
        lines.append("")
        for other in SYSTEMS[1:]:
            loop = paired_ratios(runs, "thrifty", other, lambda r: r["loop_wall_seconds"])
            wall = paired_ratios(runs, "thrifty", other, lambda r: r["process_wall_seconds"])
            loss = paired_ratios(runs, "thrifty", other, lambda r: r["validation_loss"])
            if loop:
                lines.append(f"- thrifty / {other}: training loop **{statistics.median(loop):.2f}x** "
                             f"({min(loop):.2f}-{max(loop):.2f}x), whole process {statistics.median(wall):.2f}x "
                             f"({min(wall):.2f}-{max(wall):.2f}x), validation loss {statistics.median(loss):.3f}x "
                             f"({min(loss):.3f}-{max(loss):.3f}x), paired by seed ({len(loop)} seeds).")
    gain = saved.get("gain")
    if gain:
        lines += ["", f"## Task gain: exact match on the Emotion test split ({gain['rows']} prompts, greedy)", "",
                  "| model | exact match |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in gain["exact_match"].items()]
        lines += ["", f"`python benchmarks/sft_vs_trl.py --gain`. Answers in {gain['answers']}."]
    return lines


def gain(args) -> None:
    """Base and fine-tuned models answer every test prompt; exact match against the label word."""
    import torch

    from thrifty.inference.generation import Generator
    from thrifty.models.generation import answer_matches

    torch.set_num_threads(args.threads)
    _, _, test_file = data_files()
    rows = [json.loads(l) for l in test_file.read_text(encoding="utf-8").splitlines()]
    models = {"SmolLM2-135M-Instruct (base, prompt as written)": "smollm2-135m",
              "thrifty LoRA, seed 0": str(WORK / "thrifty-seed0"), "TRL LoRA, seed 0": str(WORK / "trl-seed0" / "model")}
    scores = {}
    for name, path in models.items():
        if name.startswith("TRL"):
            generator = _trl_generator(path)
        else:
            generator = Generator.load(path)
        started = time.perf_counter()
        written = generator.generate([r["prompt"] for r in rows], chat=False, max_new_tokens=4, temperature=0.0,
                                     batch_size=32)
        scores[name] = sum(answer_matches(w, r["completion"]) for w, r in zip(written, rows)) / len(rows)
        (WORK / f"answers-{name.split()[0].lower()}.jsonl").write_text(
            "".join(json.dumps({**r, "generated": w}) + "\n" for r, w in zip(rows, written)))
        print(f"{name}: exact match {scores[name]:.4f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    results = RESULTS / "sft_vs_trl.json"
    saved = json.loads(results.read_text())
    saved["gain"] = {"rows": len(rows), "exact_match": scores, "answers": "benchmarks/runs/sft_vs_trl/answers-*.jsonl"}
    results.write_text(json.dumps(saved, indent=2) + "\n")
    write_results("sft_vs_trl", saved, summarise(saved, args))


def _trl_generator(path: str):
    """TRL's saved adapter on the base model, behind the same generation code as thrifty's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from thrifty.config import GenerateConfig
    from thrifty.inference.generation import Generator
    from thrifty.models.loading import load_tokenizer, smollm2_dir

    base = AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, path).merge_and_unload().eval()
    return Generator(model, load_tokenizer(path), "causal_lm", False, GenerateConfig(), path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gain", action="store_true", help="score base and fine-tuned answers on the test split")
    if "--gain" in sys.argv:
        parser.add_argument("--threads", type=int, default=2)
        gain(parser.parse_args())
    else:
        compare(__file__, "sft_vs_trl", SYSTEMS, run_system, summarise, parser,
                {"recipe": RECIPE, "train_rows": TRAIN_ROWS, "validation_rows": VALIDATION_ROWS},
                default_systems=("thrifty", "trl-fast", "trl-fast-bf16"))
