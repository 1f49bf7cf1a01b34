"""NER side by side: thrifty vs the Hugging Face token-classification recipe, on CoNLL-2003 and WNUT-17.

    python benchmarks/ner_vs_trainer.py --data wnut17 --seeds 42,43,44
    python benchmarks/ner_vs_trainer.py --data conll2003 --seeds 42

- trainer: the recipe of transformers' token-classification example — AutoModelForTokenClassification,
  words tokenised with is_split_into_words, each word's label on its first sub-token (-100 elsewhere),
  DataCollatorForTokenClassification, Trainer, entity-level seqeval F1 in compute_metrics (seqeval called
  directly: `evaluate.load("seqeval")` needs the hub). Evaluation and a checkpoint each epoch, the best
  model by dev F1 loaded at the end (load_best_model_at_end), then the test split once.
- thrifty: `examples/{data}.yaml` as shipped.

Same for both: all-MiniLM-L6-v2, the published train/dev/test files, epochs, learning rate, batch size 32,
eval batch size 128, weight decay 0.01 (not on biases/LayerNorm), warmup 6% then linear decay, gradient
clipping at 1.0, seed, 2 threads, evaluation each epoch, best-by-dev-F1 model scored on test. Settings that
differ by design: thrifty groups batches by length and cuts training sentences at its automatic max_length
(p99.9 of training lengths; evaluation is not cut), the Trainer recipe keeps the dataset order's random
batches and cuts at 512. Wall time is the whole worker process: imports, data, model, training, evaluation,
test, saving. Each run is a fresh process; the order alternates per seed. Results are appended as they
finish to benchmarks/results/ner_vs_trainer_{data}.json and summarised (median and range) in the .md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import PROCESS_START, REPO, compare, spread, table_head  # noqa: E402

DATA = {
    "conll2003": {"epochs": 3, "lr": 1e-4, "files": ("conll2003/train.txt", "conll2003/valid.txt", "conll2003/test.txt")},
    "wnut17": {"epochs": 5, "lr": 1e-4,
               "files": ("wnut17/wnut17train.conll", "wnut17/emerging.dev.conll", "wnut17/emerging.test.annotated")},
}
SHARED = (REPO / ".." / "shared" / "data").resolve()


def run_thrifty(data: str, seed: int) -> dict:
    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        result = thrifty.train(REPO / "examples" / f"{data}.yaml", output=Path(tmp) / "run", progress=False,
                               overrides=["--train.seed", str(seed), "--train.num_threads", "2",
                                          "--tracking.tensorboard", "false", "--tracking.energy", "false"])
    m = result.metrics
    return {"dev_f1": m["validation"]["f1"], "test_f1": m["test"]["f1"], "test_precision": m["test"]["precision"],
            "test_recall": m["test"]["recall"], "best_step": m["best"]["step"],
            "train_tokens_per_second": m["train"]["tokens_per_second"]}


def run_trainer(data: str, seed: int) -> dict:
    import numpy as np
    import torch
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from thrifty.config import DataConfig
    from thrifty.data.tagged import read_tagged
    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    torch.set_num_threads(2)
    set_seed(seed)
    spec = DATA[data]
    splits = [read_tagged(str(SHARED / f), "train", DataConfig())[:2] for f in spec["files"]]
    tags = sorted({t for s in splits[0][1] for t in s}, key=lambda t: (t != "O", t[2:], t[:1]))
    index = {t: i for i, t in enumerate(tags)}
    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(words, word_tags):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512)
        rows = []
        for i in range(len(words)):
            previous, labels = None, []
            for w in enc.word_ids(i):
                labels.append(-100 if w is None or w == previous else index[word_tags[i][w]])
                previous = w if w is not None else previous
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels})
        return rows

    train, dev, test = (encode(*s) for s in splits)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(tags), id2label=dict(enumerate(tags)),
                                                            label2id=index)

    def compute_metrics(prediction):
        logits, labels = prediction
        predicted = np.argmax(logits, axis=-1)
        gold = [[tags[l] for l in row if l != -100] for row in labels]
        guess = [[tags[p] for p, l in zip(prow, row) if l != -100] for prow, row in zip(predicted, labels)]
        return {"f1": f1_score(gold, guess), "precision": precision_score(gold, guess), "recall": recall_score(gold, guess)}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=spec["lr"], per_device_train_batch_size=32, per_device_eval_batch_size=128,
            num_train_epochs=spec["epochs"], weight_decay=0.01, warmup_steps=0.06, max_grad_norm=1.0, seed=seed,
            eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="f1",
            save_total_limit=1, logging_strategy="epoch", report_to=[], use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                          data_collator=DataCollatorForTokenClassification(tokenizer), compute_metrics=compute_metrics)
        trainer.train()
        dev_metrics = trainer.evaluate()
        test_metrics = trainer.predict(test).metrics
    return {"dev_f1": dev_metrics["eval_f1"], "test_f1": test_metrics["test_f1"],
            "test_precision": test_metrics["test_precision"], "test_recall": test_metrics["test_recall"]}


def summarise(data: str, saved: dict) -> list[str]:
    runs = saved["runs"]
    lines = table_head(f"NER side by side on {data}: thrifty vs the Trainer recipe",
                       f"python benchmarks/ner_vs_trainer.py --data {data}", saved,
                       "Each run a fresh process, order alternated per seed.",
                       ["system", "runs", "test F1 median (min-max)", "dev F1 median", "wall s median (min-max)"])
    by = {s: [r for r in runs if r["system"] == s] for s in ("thrifty", "trainer")}
    for system, rs in by.items():
        if not rs:
            continue
        lines.append(f"| {system} | {len(rs)} (seeds {', '.join(str(r['seed']) for r in rs)}) | "
                     f"{spread([r['test_f1'] for r in rs], '{:.4f}')} | "
                     f"{statistics.median(r['dev_f1'] for r in rs):.4f} | {spread([r['wall_seconds'] for r in rs])} |")
    if by["thrifty"] and by["trainer"]:
        t, h = by["thrifty"], by["trainer"]
        df1 = statistics.median(r["test_f1"] for r in t) - statistics.median(r["test_f1"] for r in h)
        ratio = statistics.median(r["wall_seconds"] for r in t) / statistics.median(r["wall_seconds"] for r in h)
        lines += ["", f"thrifty - Trainer test F1 (medians): **{100 * df1:+.2f} points** (floor: >= -0.5); "
                      f"thrifty wall time / Trainer's: **{ratio:.2f}x** (floor: <= 0.7x)."]
    return lines


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    result = (run_thrifty if system == "thrifty" else run_trainer)(args.data, seed)
    result["wall_seconds"] = round(time.perf_counter() - PROCESS_START, 1)  # the whole process is this benchmark's clock
    return result


def summarise_saved(saved: dict, args: argparse.Namespace) -> list[str]:
    markdown = summarise(args.data, saved)
    if saved.get("superseded"):
        old = saved["superseded"]
        markdown += ["", f"Superseded and not counted above: {len(old['runs'])} earlier thrifty runs ({old['why']}); "
                         "test F1 " + ", ".join(f"{r['test_f1']:.4f} (seed {r['seed']})" for r in old["runs"]) + ". "
                         "The Trainer side's code did not change, so its runs were kept; the thrifty runs after the "
                         "change were made with `--systems thrifty`."]
    return markdown


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA), required=True)
    compare(__file__, "ner_vs_trainer_{data}", ("thrifty", "trainer"), run_system, summarise_saved, parser,
            settings={"epochs_lr_files": DATA},
            worker_args=lambda args: ["--data", args.data], default_seeds="42")
