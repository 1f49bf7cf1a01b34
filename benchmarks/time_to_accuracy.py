"""Time to accuracy: wall seconds from the first training step until SST-2 dev accuracy first reaches 0.87.

    python benchmarks/time_to_accuracy.py --seeds 0,1,2      # ~8 min per seed on 2 cores

Both sides run the same recipe on the same rows, each in a fresh process, the order alternated per seed:
- data: SST-2 train/dev after thrifty's cleaning (6,909 / 872 rows: 9 duplicates and 2 sentences that
  leak into test dropped, 3 texts normalised) — the Trainer reads the very rows thrifty trains on;
  max_length 64 (thrifty's automatic choice, set explicitly on both sides);
- recipe: all-MiniLM-L6-v2, lr 1e-4, batch 32, linear decay after 6% warmup, weight decay 0.01 (not on
  biases/LayerNorm), gradient clipping 1.0, at most 3 epochs, the seed;
- batches: length-grouped on both sides (the Trainer's `train_sampling_strategy="group_by_length"`: megabatches of 50 batches
  sorted by length, as thrifty's windows of 50 batches);
- evaluation every 54 steps (4 per epoch) on both, evaluation batch 128; the Trainer saves a checkpoint at
  each evaluation and loads the best at the end (`load_best_model_at_end`), thrifty keeps its best weights
  and writes its checkpoint after each evaluation; each stops at the first evaluation that reaches 0.87;
- clock: a stopwatch started at the first training step and read at the end of the evaluation that
  reaches the target, so steps, evaluations, checkpoints and logging all count on both sides
  (thrifty: `wall_seconds` of its history; Trainer: a callback's `on_step_begin` / `on_evaluate`). Model
  loading and tokenisation are outside that clock, for both; the whole process's wall time is reported too.

What differs by design: thrifty's own loop (fused AdamW, the last layer computed for [CLS] only, a
checkpoint of the trainable state instead of the Trainer's full checkpoint). Results are appended per run to
benchmarks/results/time_to_accuracy.json and summarised (median, min-max) in the .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORKER_START = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, machine, run_worker  # noqa: E402

TARGET, MAX_EPOCHS, EVAL_EVERY, MAX_LENGTH = 0.87, 3, 54, 64
CONFIG = REPO / "examples" / "sst2.yaml"


def run_trainer(seed: int) -> dict:
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    from thrifty.data.prepare import prepare_data
    from thrifty.inputs import as_config
    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    set_seed(seed)
    data = prepare_data(as_config(str(CONFIG)).data, seed)  # the rows thrifty trains on
    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(data.label_names))

    def dataset(split):
        enc = tokenizer(split.texts, truncation=True, max_length=MAX_LENGTH)
        return [{"input_ids": i, "attention_mask": m, "labels": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], split.labels)]

    train, dev = dataset(data.train), dataset(data.validation)
    history: list[dict] = []

    class Stopwatch(TrainerCallback):
        start = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            history.append({"step": state.global_step, "epoch": round(state.epoch, 3), "accuracy": metrics["eval_accuracy"],
                            "wall_seconds": round(time.perf_counter() - self.start, 2)})
            if metrics["eval_accuracy"] >= TARGET:
                control.should_training_stop = True

    def accuracy(prediction):
        return {"accuracy": float(np.mean(np.argmax(prediction.predictions, axis=1) == prediction.label_ids))}

    setup_seconds = time.perf_counter() - WORKER_START
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, learning_rate=1e-4, per_device_train_batch_size=32, per_device_eval_batch_size=128,
            num_train_epochs=MAX_EPOCHS, warmup_steps=0.06, weight_decay=0.01, max_grad_norm=1.0,
            lr_scheduler_type="linear", train_sampling_strategy="group_by_length", eval_strategy="steps", eval_steps=EVAL_EVERY,
            save_strategy="steps", save_steps=EVAL_EVERY, save_total_limit=1, load_best_model_at_end=True,
            metric_for_best_model="accuracy", logging_strategy="no", report_to=[], disable_tqdm=True, seed=seed,
            use_cpu=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                          callbacks=[Stopwatch()])
        trainer.train()
    return {"history": history, "setup_seconds": round(setup_seconds, 1), "train_rows": len(train)}


def run_thrifty(seed: int) -> dict:
    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        result = thrifty.train(str(CONFIG), output=Path(tmp) / "run", progress=False, overrides=[
            "--train.seed", str(seed), "--train.eval_every_steps", str(EVAL_EVERY), "--train.stop_at_metric", str(TARGET),
            "--train.epochs", str(MAX_EPOCHS), "--train.early_stopping_patience", "0", "--data.max_length", str(MAX_LENGTH),
            "--data.test", "null", "--tracking.tensorboard", "false", "--tracking.energy", "false"])
    m = result.metrics
    history = [{"step": h["step"], "epoch": h["epoch"], "accuracy": h["accuracy"], "wall_seconds": h["wall_seconds"]}
               for h in m["history"]]
    return {"history": history}


def first_hit(history: list[dict]) -> dict | None:
    return next((h for h in history if h["accuracy"] >= TARGET), None)


def summarise(runs: list[dict]) -> list[str]:
    lines = [f"# Time to {TARGET} SST-2 dev accuracy: thrifty vs the grouped Trainer, same recipe", "",
             "`python benchmarks/time_to_accuracy.py --seeds 0,1,2` (settings: the script's docstring). Wall seconds "
             "from the first training step to the end of the evaluation that reaches the target; evaluation every "
             f"{EVAL_EVERY} steps on both sides; each run a fresh process, order alternated per seed.", "",
             "| system | seeds | seconds to target, median (min-max) | reached at step (per seed) | process wall s median |",
             "| --- | --- | --- | --- | --- |"]
    by = {s: [r for r in runs if r["system"] == s] for s in ("thrifty", "trainer")}
    medians = {}
    for system, rs in by.items():
        if not rs:
            continue
        hits = [r["seconds_to_target"] for r in rs if r["seconds_to_target"] is not None]
        steps = ", ".join(str(r["step_at_target"]) if r["step_at_target"] else "not reached" for r in rs)
        if hits:
            medians[system] = statistics.median(hits)
        lines.append(f"| {system} | {', '.join(str(r['seed']) for r in rs)} | "
                     + (f"{statistics.median(hits):.0f} ({min(hits):.0f}-{max(hits):.0f})" if hits else "not reached")
                     + (f" ({len(rs) - len(hits)} not reached)" if hits and len(hits) < len(rs) else "")
                     + f" | {steps} | {statistics.median(r['process_wall_seconds'] for r in rs):.0f} |")
    if len(medians) == 2:
        lines += ["", f"thrifty / Trainer (medians): **{medians['thrifty'] / medians['trainer']:.2f}x** the time."]
        per_step = {s: statistics.median(r["seconds_to_target"] / r["step_at_target"] for r in rs if r["step_at_target"])
                    for s, rs in by.items()}
        lines += ["", f"Seconds per step up to the target (steps, evaluations and checkpoints), median: thrifty "
                      f"{per_step['thrifty']:.3f}, Trainer {per_step['trainer']:.3f} = "
                      f"**{per_step['thrifty'] / per_step['trainer']:.2f}x** the time per step; the rest of the gap is the "
                      "step at which each first reached the target."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=("trainer", "thrifty"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        result = (run_trainer if args.worker == "trainer" else run_thrifty)(args.seed)
        result["process_wall_seconds"] = round(time.perf_counter() - WORKER_START, 1)
        print("RESULT " + json.dumps(result), flush=True)
        return
    out = RESULTS / "time_to_accuracy.json"
    saved = json.loads(out.read_text()) if out.exists() else {"target": TARGET, "machine": machine(args.threads), "runs": []}
    done = len({r["seed"] for r in saved["runs"]})  # alternation continues across invocations
    for n, seed in enumerate((int(s) for s in args.seeds.split(",")), start=done):
        for system in (("thrifty", "trainer") if n % 2 == 0 else ("trainer", "thrifty")):
            r = run_worker(__file__, ["--worker", system, "--seed", str(seed)], args.threads)
            hit = first_hit(r["history"])
            saved["runs"].append({"system": system, "seed": seed, "seconds_to_target": hit and hit["wall_seconds"],
                                  "step_at_target": hit and hit["step"], **r})
            out.write_text(json.dumps(saved, indent=2) + "\n")
            print(f"seed {seed} {system}: {hit and hit['wall_seconds']} s to {TARGET} (step {hit and hit['step']}), "
                  f"process {r['process_wall_seconds']} s", file=sys.stderr, flush=True)
    lines = summarise(saved["runs"])
    (RESULTS / "time_to_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
