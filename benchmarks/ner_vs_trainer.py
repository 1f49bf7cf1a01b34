"""NER side by side: thrifty vs the Hugging Face token-classification recipe, on CoNLL-2003 and WNUT-17.

    python benchmarks/ner_vs_trainer.py --data wnut17 --seeds 42,43,44,45,46
    python benchmarks/ner_vs_trainer.py --data conll2003 --train-sentences 200 --seeds 0,1,2,3,4

- trainer: the recipe of transformers' token-classification example — AutoModelForTokenClassification,
  words tokenised with is_split_into_words, each word's label on its first sub-token (-100 elsewhere),
  DataCollatorForTokenClassification, Trainer with `train_sampling_strategy="group_by_length"` (what a careful
  CPU user runs: far less padding), entity-level seqeval F1 in compute_metrics (seqeval called directly:
  `evaluate.load("seqeval")` needs the hub). Evaluation and a checkpoint each epoch, the best model by dev F1
  loaded at the end (load_best_model_at_end), then the test split once. fp32, the Trainer's default on a CPU.
- thrifty: `examples/{data}.yaml` as shipped (`train.precision: auto`: bf16 autocast on a CPU with bf16).
- thrifty-torch-dropout (only when asked for with --systems): the same with `--train.fast_dropout false`, PyTorch's
  own dropout masks instead of thrifty's counter-based ones: the two differ only in which units each step drops.

Same for both: all-MiniLM-L6-v2, the published dev/test files, the training sentences, the data set's tag set
(every tag of its full training file, as a Hugging Face dataset's features give it), epochs, learning rate,
batch size, eval batch size 128, weight decay 0.01 (not on biases/LayerNorm), warmup 6% then linear decay,
gradient clipping at 1.0, seed, 2 threads, evaluation each epoch, best-by-dev-F1 model scored on test.

Full sets: the published training file, the epochs and learning rate of DATA, batch size 32. Small data
(`--train-sentences N`): N training sentences drawn by the run's seed (both systems of a seed train on the
same N; each seed another draw), 10 epochs, batch size 16, learning rate 1e-4 unless given.

Settings that differ by design: thrifty's precision (above); thrifty cuts training sentences at its automatic
max_length (p99.9 of training lengths; evaluation is not cut), the Trainer recipe at 512; the two length
groupings differ in detail (the Trainer sorts megabatches of 50 batches by length, thrifty shuffles within
length buckets). Wall time is the whole worker process: imports, data, model, training, evaluation, test,
saving. Each run is a fresh process; the order alternates per seed. Results are appended as they finish to
benchmarks/results/ner_vs_trainer_{data}[_{N}].json and summarised (median and range) in the .md.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from common import PROCESS_START, REPO, by_cpu, compare, head_by_cpu, spread, table_by_cpu  # noqa: E402

DATA = {
    "conll2003": {"epochs": 3, "lr": 1e-4, "files": ("conll2003/train.txt", "conll2003/valid.txt", "conll2003/test.txt")},
    "wnut17": {"epochs": 5, "lr": 1e-4,
               "files": ("wnut17/wnut17train.conll", "wnut17/emerging.dev.conll", "wnut17/emerging.test.annotated")},
}
SHARED = (REPO / ".." / "shared" / "data").resolve()
SMALL = {"epochs": 10, "batch_size": 16, "lr": 1e-4}  # the low-resource recipe of --train-sentences


def recipe(args: argparse.Namespace) -> dict:
    """Epochs, batch size and learning rate of this comparison: the data set's, or the small-data recipe's."""
    base = {"epochs": DATA[args.data]["epochs"], "batch_size": 32, "lr": DATA[args.data]["lr"]}
    if args.train_sentences:
        base = dict(SMALL)
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    return {k: given[k] if given[k] is not None else v for k, v in base.items()}


@functools.lru_cache(maxsize=None)  # the full training file feeds both the draw and the tag set: read it once
def tagged(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    from thrifty.config import DataConfig
    from thrifty.data.tagged import read_tagged

    words, tags, _ = read_tagged(str(path), "train", DataConfig())
    return words, tags


def training_file(args: argparse.Namespace, seed: int, folder: Path) -> Path:
    """The published training file, or N of its sentences drawn by `seed` written as a two-column CoNLL file."""
    full = SHARED / DATA[args.data]["files"][0]
    if not args.train_sentences:
        return full
    words, tags = tagged(full)
    chosen = sorted(random.Random(seed).sample(range(len(words)), args.train_sentences))
    path = folder / "train.txt"
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(words[i], tags[i])) + "\n" for i in chosen),
                    encoding="utf-8")
    return path


def tag_set(args: argparse.Namespace) -> list[str]:
    """Every tag of the data set's full training file, O first, then by type, B before I."""
    from thrifty.data.tagged import order_tags

    return order_tags({t for s in tagged(SHARED / DATA[args.data]["files"][0])[1] for t in s})


def run_thrifty(args: argparse.Namespace, seed: int, extra: tuple[str, ...] = ()) -> dict:
    import thrifty

    r = recipe(args)
    with tempfile.TemporaryDirectory() as tmp:
        train = training_file(args, seed, Path(tmp))
        result = thrifty.train(REPO / "examples" / f"{args.data}.yaml", output=Path(tmp) / "run", progress=False,
                               overrides=["--train.seed", str(seed), "--train.num_threads", "2",
                                          "--data.train", str(train), "--data.labels", json.dumps(tag_set(args)),
                                          "--train.epochs", str(r["epochs"]), "--train.batch_size", str(r["batch_size"]),
                                          "--train.learning_rate", str(r["lr"]),
                                          "--tracking.tensorboard", "false", "--tracking.energy", "false", *extra])
    m = result.metrics
    return {"dev_f1": m["validation"]["f1"], "test_f1": m["test"]["f1"], "test_precision": m["test"]["precision"],
            "test_recall": m["test"]["recall"], "best_step": m["best"]["step"],
            "train_tokens_per_second": m["train"]["tokens_per_second"], "precision": m["model"]["precision"],
            "history": [{k: h.get(k) for k in ("step", "f1", "seconds")} for h in m["history"]]}


def run_trainer(args: argparse.Namespace, seed: int) -> dict:
    import numpy as np
    import torch
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    torch.set_num_threads(2)
    set_seed(seed)
    r = recipe(args)
    scratch = tempfile.TemporaryDirectory()
    files = [training_file(args, seed, Path(scratch.name)), *(SHARED / f for f in DATA[args.data]["files"][1:])]
    splits = [tagged(f) for f in files]
    tags = tag_set(args)
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
            output_dir=tmp, learning_rate=r["lr"], per_device_train_batch_size=r["batch_size"],
            per_device_eval_batch_size=128, num_train_epochs=r["epochs"], train_sampling_strategy="group_by_length", weight_decay=0.01, warmup_steps=0.06, max_grad_norm=1.0, seed=seed,
            eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="f1",
            save_total_limit=1, logging_strategy="epoch", report_to=[], use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                          data_collator=DataCollatorForTokenClassification(tokenizer), compute_metrics=compute_metrics)
        trainer.train()
        history = [{"step": h["step"], "f1": h["eval_f1"]} for h in trainer.state.log_history if "eval_f1" in h]
        dev_metrics = trainer.evaluate()
        test_metrics = trainer.predict(test).metrics
    scratch.cleanup()
    return {"dev_f1": dev_metrics["eval_f1"], "test_f1": test_metrics["test_f1"],
            "test_precision": test_metrics["test_precision"], "test_recall": test_metrics["test_recall"],
            "history": history}


def paired_points(a_runs: list[dict], b_runs: list[dict], key: str) -> list[float]:
    """a's `key` minus b's, in points, for each seed both ran (in a's order)."""
    return [100 * (a[key] - b[key]) for a in a_runs for b in b_runs if a["seed"] == b["seed"]]


def summarise(args: argparse.Namespace, saved: dict) -> list[str]:
    r = recipe(args)
    small = f" --train-sentences {args.train_sentences}" if args.train_sentences else ""
    what = f"{args.train_sentences} training sentences drawn per seed" if small else "the full training file"
    precisions = ", ".join(sorted({str(x.get("precision") or "precision not recorded") for x in saved["runs"] if x["system"] == "thrifty"}))
    lines = head_by_cpu(f"NER side by side on {args.data}{' (' + what + ')' if small else ''}: thrifty vs the "
                        "length-grouped Trainer recipe", f"python benchmarks/ner_vs_trainer.py --data {args.data}{small}",
                        saved, f"{what[0].upper() + what[1:]}, {r['epochs']} epochs, batch size {r['batch_size']}, "
                               f"learning rate {r['lr']:g}; thrifty as shipped ({precisions}), the Trainer in fp32. Each "
                               "run a fresh process, order alternated per seed.")
    floor = ">= 0" if args.train_sentences else ">= -0.5"
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["system", "runs", "test F1 median (min-max)", "dev F1 median",
                                          "wall s median (min-max)"])
        by = {s: [x for x in runs if x["system"] == s] for s in ("thrifty", "thrifty-torch-dropout", "trainer")}
        for system, rs in by.items():
            if rs:
                lines.append(f"| {system} | {len(rs)} (seeds {', '.join(str(x['seed']) for x in rs)}) | "
                             f"{spread([x['test_f1'] for x in rs], '{:.4f}')} | "
                             f"{statistics.median(x['dev_f1'] for x in rs):.4f} | "
                             f"{spread([x['wall_seconds'] for x in rs])} |")
        if by["thrifty"] and by["trainer"]:
            t, h = by["thrifty"], by["trainer"]
            df1 = statistics.median(x["test_f1"] for x in t) - statistics.median(x["test_f1"] for x in h)
            ratio = statistics.median(x["wall_seconds"] for x in t) / statistics.median(x["wall_seconds"] for x in h)
            paired = paired_points(t, h, "test_f1")
            lines += ["", f"thrifty - Trainer test F1 (medians): **{100 * df1:+.2f} points** (floor: {floor}); seed by "
                          f"seed {', '.join(f'{d:+.2f}' for d in paired)}; thrifty wall time / Trainer's: "
                          f"**{ratio:.2f}x** (floor: <= 0.7x)."]
        if by["thrifty"] and by["thrifty-torch-dropout"]:
            t, p = by["thrifty"], by["thrifty-torch-dropout"]
            paired = {x: paired_points(p, t, x) for x in ("dev_f1", "test_f1")}
            lines += ["", "PyTorch's dropout masks - thrifty's (thrifty-torch-dropout - thrifty), seed by seed: dev F1 "
                          f"{', '.join(f'{d:+.2f}' for d in paired['dev_f1'])} (median {statistics.median(paired['dev_f1']):+.2f}); "
                          f"test F1 {', '.join(f'{d:+.2f}' for d in paired['test_f1'])} "
                          f"(median {statistics.median(paired['test_f1']):+.2f}) points."]
    return lines


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    if system == "trainer":
        result = run_trainer(args, seed)
    else:
        result = run_thrifty(args, seed, ("--train.fast_dropout", "false") if system == "thrifty-torch-dropout" else ())
    result["wall_seconds"] = round(time.perf_counter() - PROCESS_START, 1)  # the whole process is this benchmark's clock
    return result


def summarise_saved(saved: dict, args: argparse.Namespace) -> list[str]:
    markdown = summarise(args, saved)
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

    class Sentences(argparse.Action):  # also names the results file: ner_vs_trainer_{data}_{N}
        def __call__(self, parser, namespace, values, option_string=None):
            namespace.train_sentences, namespace.slice = values, f"_{values}" if values else ""

    parser.add_argument("--train-sentences", type=int, default=0, action=Sentences,
                        help="train on this many sentences drawn by each seed (small data); 0 = the full training file")
    parser.add_argument("--epochs", type=int, help="default: the data set's (full) or 10 (small data)")
    parser.add_argument("--batch-size", type=int, help="default: 32 (full) or 16 (small data)")
    parser.add_argument("--lr", type=float, help="default: 1e-4")
    parser.set_defaults(slice="")
    compare(__file__, "ner_vs_trainer_{data}{slice}", ("thrifty", "trainer", "thrifty-torch-dropout"), run_system,
            summarise_saved, parser, default_systems=("thrifty", "trainer"),
            settings={"epochs_lr_files": DATA, "small_data_recipe": SMALL},
            worker_args=lambda args: ["--data", args.data, "--train-sentences", str(args.train_sentences),
                                      *(["--epochs", str(args.epochs)] if args.epochs else []),
                                      *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
                                      *(["--lr", str(args.lr)] if args.lr else [])],
            default_seeds="42")
