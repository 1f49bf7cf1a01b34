"""Time to accuracy: CPU wall seconds until SST-2 dev accuracy first reaches 0.87.

    python benchmarks/time_to_accuracy.py          # both systems once, up to 3 epochs each (~12 min)

- trainer: the Trainer recipe (lr 1e-4, batch 32, evaluation each epoch, defaults otherwise,
  DataCollatorWithPadding, max length 128), stopped by a callback as soon as an evaluation reaches 0.87.
- thrifty: `examples/sst2.yaml` as shipped (lr 1e-4, batch 32, length-grouped batches), evaluating every
  54 steps (4 times per epoch) and stopping at 0.87 (`train.stop_at_metric`).

Both count training and evaluation time from the start of training (model loading and tokenisation are
not counted for either). Same machine, data, model and thread count; each in its own process.
Results: benchmarks/results/time_to_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine, read_sst2, write_results

TARGET, MAX_EPOCHS = 0.87, 3


def run_trainer() -> dict:
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    set_seed(0)
    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    def dataset(name):
        texts, labels = read_sst2(name)
        enc = tokenizer(texts, truncation=True, max_length=128)
        return [{"input_ids": i, "attention_mask": m, "labels": y} for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]

    history = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            accuracy = metrics["eval_accuracy"]
            history.append({"epoch": state.epoch, "step": state.global_step, "accuracy": accuracy,
                            "seconds": round(time.perf_counter() - self.start, 2)})
            if accuracy >= TARGET:
                control.should_training_stop = True

    def accuracy(prediction):
        return {"accuracy": float(np.mean(np.argmax(prediction.predictions, axis=1) == prediction.label_ids))}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, learning_rate=1e-4, per_device_train_batch_size=32, eval_strategy="epoch",
                                 num_train_epochs=MAX_EPOCHS, save_strategy="no", report_to=[], disable_tqdm=True,
                                 seed=0, use_cpu=True)
        trainer = Trainer(model=model, args=args, train_dataset=dataset("stsa.binary.train"),
                          eval_dataset=dataset("stsa.binary.dev"), data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=accuracy, callbacks=[Clock()])
        trainer.train()
    return {"history": history}


def run_thrifty() -> dict:
    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        result = thrifty.train(str(REPO / "examples" / "sst2.yaml"), output=Path(tmp) / "run", progress=False, overrides=[
            "--train.eval_every_steps", "54", "--train.stop_at_metric", str(TARGET), "--train.epochs", str(MAX_EPOCHS),
            "--train.early_stopping_patience", "0", "--data.test", "null", "--tracking.tensorboard", "false"])
    return {"history": result.metrics["history"]}


def first_hit(history: list[dict]) -> dict | None:
    return next((h for h in history if h["accuracy"] >= TARGET), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=("trainer", "thrifty"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(run_trainer() if args.worker == "trainer" else run_thrifty()))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results = {}
    for system in ("thrifty", "trainer"):
        out = subprocess.run([sys.executable, __file__, "--worker", system, "--threads", str(args.threads)],
                             capture_output=True, text=True, env=env, cwd=REPO)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{system} failed:\n{out.stderr[-3000:]}")
        results[system] = json.loads(line[len("RESULT "):])
        hit = first_hit(results[system]["history"])
        results[system]["seconds_to_target"] = hit["seconds"] if hit else None
        print(system, results[system], flush=True)
    a, b = results["thrifty"]["seconds_to_target"], results["trainer"]["seconds_to_target"]

    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "target": TARGET, "machine": machine(args.threads),
           "systems": results, "ratio_thrifty_over_trainer": round(a / b, 3) if a and b else None}
    lines = [f"# Time to {TARGET} SST-2 dev accuracy ({out['date']})", "",
             f"all-MiniLM-L6-v2, full SST-2 train; {out['machine']['cpu']}, {args.threads} threads, torch {out['machine']['torch']}, fp32; seconds of training + evaluation.", "",
             "| system | seconds to target | evaluations (epoch: accuracy @ seconds) |", "| --- | --- | --- |"]
    for name, row in results.items():
        evals = "; ".join(f"{h['epoch']:.2f}: {h['accuracy']:.4f} @ {h['seconds']:.0f}s" for h in row["history"])
        target = f"{row['seconds_to_target']:.0f}" if row["seconds_to_target"] else "not reached"
        lines.append(f"| {name} | {target} | {evals} |")
    lines += ["", f"Ratio thrifty / Trainer: {out['ratio_thrifty_over_trainer']}"]
    write_results("time_to_accuracy", out, lines)


if __name__ == "__main__":
    main()
