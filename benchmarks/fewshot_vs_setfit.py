"""Few-shot side by side: thrifty `strategy: fewshot` vs SetFit 1.2.0, and thrifty `full` at the same N.

    pip install setfit==1.2.0        # the benchmark only; thrifty does not need it
    python benchmarks/fewshot_vs_setfit.py --data sst2 --shots 8 --seeds 0,1,2,3,4

Systems run by default, in the same rounds: thrifty-no-anchors and setfit (the headline pair: both get the labelled
examples and nothing else) and thrifty (as shipped, which also reads the label names: a separate, named row).

Data (../shared/data, see each SOURCE.md), the accuracy reported on:
- sst2: published train / dev / test; test.            - emotion: published train / val / test; test.
- cr: custrev.all split once 80/20 (seed 0, stratified); the 20%. TREC-6: published train / test; test.
- banking77: train.csv only; a seeded 10% of it carved out (seed = the run's seed) and reported on. At 64 per class
  4 of the 77 intents have fewer rows than that left (31, 37, 53, 55): `data.short_classes: keep` takes those
  whole (4,848 training rows).
Per seed, `data.examples_per_class: N` draws N training rows per class with that seed (thrifty's prepare_data);
SetFit is given exactly those rows (read through the same prepare_data), and is scored on the same test rows.

- setfit: `SetFitModel.from_pretrained(all-MiniLM-L6-v2)` and `Trainer(args=TrainingArguments(batch_size=16,
  seed=seed))`, everything else SetFit's default (1 epoch of its generated pairs, CosineSimilarityLoss, body lr
  2e-5, logistic-regression head): what a SetFit user runs.
- setfit-iter20 (`--systems thrifty-no-anchors,setfit-iter20,thrifty`): the same with `num_iterations=20`, the SetFit paper's
  setting (20 rounds of one positive and one negative pair per example: 40 pairs per example), for the cells where
  the default list of every unique pair takes hours here (64 per class with 6 classes, Banking77's 77 classes).
- setfit-iter4: `num_iterations=4`, for a cell where 20 iterations would take hours (Banking77 at 64 per class:
  193,920 pairs, about two hours a seed here at 36 ms a pair); named as such in every table.
- thrifty: `strategy: fewshot` as shipped (token embeddings frozen, pairs inside class-balanced batches), batch 16,
  lr 2e-4, label anchors where the labels are words (emotion, banking77) or described in the config (sst2/cr:
  negative/positive; trec: its six classes); steps: at least 6, and 3 epochs for two classes, 6 epochs for more
  (`thrifty.tasks.fewshot.recommended_epochs`, what `thrifty recommend` proposes); from 2,000 training rows
  (Banking77 at 64 per class only) the second half of the epochs end to end (`end_to_end_epochs` automatic:
  chosen on Banking77 64's seed 0, where it was first tried; every other cell is pairs only). The learning rate was chosen
  on SST-2 dev (seeds 0-4), the epochs on SST-2 dev, Emotion val and a dev split held out of TREC's train file
  (seeds 0-2); never on a reported split. Validation is evaluated once, at the end (the few-shot protocol has no
  labelled dev set to choose with), and its time is not counted as training.
- full: thrifty `strategy: full` on the same rows, batch 16, lr 1e-4, 10 epochs (at least 20 steps), evaluated
  at the end only: plain fine-tuning at this N.

Ablations, run on request (`--systems thrifty-no-anchors,...`), each one change to thrifty's fewshot:
thrifty-3epochs (3 epochs whatever the number of classes: the first runs' schedule), thrifty-unchunked (each batch
encoded whole, padded to its longest row, as before length chunks: models/sentence.py), thrifty-described (SST-2 only:
label descriptions of a few words, "negative: bad, boring, a waste of time" / "positive: good, enjoyable, worth
seeing", instead of the names "negative" / "positive"),
thrifty-no-anchors (no label anchors), thrifty-trained-embeddings (the token embedding table trains too),
thrifty-e2eK (`strategy.fewshot.end_to_end_epochs: K`: the last K of the
epochs train encoder and head together on cross-entropy; thrifty-e2e0: pairs only whatever the size), thrifty-self-training (`data.unlabelled` = the texts of the training pool the seed's rows are drawn from, labels
dropped; thrifty leaves out the rows it has labelled), thrifty-pseudoK (the same with K pseudo-labels per class).
zero-shot: no labelled example at all: `thrifty zeroshot` (each text gets the label whose anchor text is nearest,
cosine, in the pre-trained encoder's embedding) and `thrifty predict`; "train s" is the building of that model
folder; deterministic, so one seed says it all.

Training time: SetFit's `trainer.train()` (pairs, body, head); thrifty's loop from the first step to the saved
checkpoint, minus its validation passes (head fits included). Both in a fresh process with 2 threads; process
wall time is reported beside it. Settings that differ by design: the pairs (SetFit lists pairs and encodes two
texts per pair; thrifty uses every pair inside a class-balanced batch), the label anchors, max_length (thrifty
cuts at p99.9 of the training lengths, SetFit at the model's 256), and the learning rate.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

from common import REPO, by_cpu, compare, head_by_cpu, table_by_cpu  # noqa: E402

SHARED = (REPO / ".." / "shared" / "data").resolve()
SENTIMENT = {"0": "negative", "1": "positive"}
DATA = {
    "sst2": {"train": "sst2/stsa.binary.train", "validation": "sst2/stsa.binary.dev", "test": "sst2/stsa.binary.test",
             "descriptions": SENTIMENT,
             # thrifty-described: tried once on SST-2 dev (seeds 0-4, 8 per class) against the names alone: 70.1% vs
             # 67.7%
             "described": {"0": "negative: bad, boring, a waste of time",
                           "1": "positive: good, enjoyable, worth seeing"}},
    "cr": {"split": "cr/custrev.all", "descriptions": SENTIMENT},
    "emotion": {"train": "emotion/train.txt", "validation": "emotion/val.txt", "test": "emotion/test.txt",
                "text_column": "text", "label_column": "label_name"},
    "trec": {"train": "trec/TREC.train.all", "test": "trec/TREC.test.all", "encoding_errors": "replace",
             "descriptions": {"0": "description or definition", "1": "entity or thing", "2": "abbreviation",
                              "3": "human or person", "4": "location or place", "5": "number or quantity"}},
    # short_classes keep: at 64 per class, 4 intents have fewer training rows once the 10% is carved out (kept whole)
    "banking77": {"train": "banking77/train.csv", "text_column": "text", "label_column": "category",
                  "short_classes": "keep"},
}


def cr_split(folder: Path) -> tuple[Path, Path]:
    """CR's one file split once, 80/20, stratified, seed 0: the same split for every run."""
    lines = [l for l in (SHARED / "cr" / "custrev.all").read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    by_label: dict[str, list[str]] = {}
    for line in lines:
        by_label.setdefault(line.split(" ", 1)[0], []).append(line)
    train, test = [], []
    rng = random.Random(0)
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        cut = round(len(rows) * 0.8)
        train += rows[:cut]
        test += rows[cut:]
    (folder / "cr_train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "cr_test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    return folder / "cr_train.txt", folder / "cr_test.txt"


def thrifty_config(data: str, shots: Optional[int], folder: Path) -> dict:
    spec = DATA[data]
    cfg = {"train": str(SHARED / spec["train"]) if "train" in spec else None, "examples_per_class": shots}
    if "split" in spec:
        train, test = cr_split(folder)
        cfg.update(train=str(train), test=str(test))
    for key in ("validation", "test"):
        if key in spec:
            cfg[key] = str(SHARED / spec[key])
    for key in ("text_column", "label_column", "encoding_errors", "short_classes"):
        if key in spec:
            cfg[key] = spec[key]
    return {"model": {"name": "all-MiniLM-L6-v2"}, "data": cfg}


def rows(data: str, shots: int, seed: int, folder: Path):
    """The training rows and the scored rows of this seed, as thrifty prepares them."""
    from thrifty.config import config_from_dict
    from thrifty.data.prepare import prepare_data

    config = config_from_dict(thrifty_config(data, shots, folder)).validate()
    prepared = prepare_data(config.data, seed)
    scored = prepared.test if prepared.test is not None else prepared.validation
    return prepared, scored


def unlabelled_file(data: str, seed: int, folder: Path) -> Path:
    """The texts of the training pool this seed's rows are drawn from, labels dropped, one per line (thrifty's
    fewshot leaves out the rows it has labelled, and any validation or test text)."""
    from thrifty.config import config_from_dict
    from thrifty.data.prepare import prepare_data

    cfg = thrifty_config(data, None, folder)  # the whole pool, not the seed's N per class
    pool = prepare_data(config_from_dict(cfg).validate().data, seed).train
    path = folder / "unlabelled.txt"
    path.write_text("".join(text + "\n" for text in pool.texts), encoding="utf-8")
    return path


def variant(system: str) -> dict:
    """strategy.fewshot settings of a thrifty system: the shipped defaults, or one change (an ablation)."""
    if system == "thrifty-no-anchors":
        return {"label_anchors": False}
    if system == "thrifty-trained-embeddings":
        return {"freeze_embeddings": False}
    if system.startswith("thrifty-pseudo"):
        return {"pseudo_labels_per_class": int(system.removeprefix("thrifty-pseudo"))}
    if system.startswith("thrifty-e2e"):
        return {"end_to_end_epochs": int(system.removeprefix("thrifty-e2e"))}
    return {}


def run_thrifty(data: str, shots: int, seed: int, strategy: str, system: str = "thrifty") -> dict:
    import thrifty
    from thrifty.tasks.fewshot import recommended_epochs

    if system == "thrifty-unchunked":  # each batch encoded whole, padded to its longest row (before length chunks)
        import thrifty.models.sentence

        thrifty.models.sentence.CHUNK_SAVING = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        prepared, _ = rows(data, shots, seed, Path(tmp))
        n, batch = len(prepared.train), 16
        per_epoch = math.ceil(n / batch)
        if strategy == "fewshot":
            # What `thrifty recommend` proposes (3 epochs for two classes, 6 for more, chosen on dev splits: see
            # recommended_epochs); thrifty-3epochs: 3 whatever the classes, the first runs' schedule
            classes = 2 if system == "thrifty-3epochs" else len(prepared.label_names)
            epochs, lr = recommended_epochs(classes, per_epoch), 2e-4
        else:
            epochs, lr = max(10, math.ceil(20 / per_epoch)), 1e-4
        config = thrifty_config(data, shots, Path(tmp))
        config["strategy"] = {"name": strategy}
        if strategy == "fewshot":
            config["strategy"]["fewshot"] = variant(system)
            if "descriptions" in DATA[data]:
                config["strategy"]["fewshot"]["label_descriptions"] = DATA[data]["descriptions"]
            if system == "thrifty-described":  # a few words more than the label's name (written for SST-2)
                config["strategy"]["fewshot"]["label_descriptions"] = DATA[data]["described"]
            if system.startswith(("thrifty-self-training", "thrifty-pseudo")):
                config["data"]["unlabelled"] = str(unlabelled_file(data, seed, Path(tmp)))
        config["train"] = {"epochs": epochs, "batch_size": batch, "learning_rate": lr, "seed": seed,
                           "eval_every_steps": epochs * per_epoch, "num_threads": 2}
        config["tracking"] = {"tensorboard": False, "energy": False}
        result = thrifty.train(config, output=Path(tmp) / "run", progress=False)
    m, train = result.metrics, result.metrics["train"]
    scored = m["test"] if "test" in m else m["validation"]
    return {"accuracy": scored["accuracy"], "macro_f1": scored["macro_f1"], "scored_rows": scored["examples"],
            "validation_accuracy": m["validation"]["accuracy"], "train_rows": n, "steps": train["steps"],
            "train_seconds": round(train["loop_wall_seconds"] - train["eval_seconds"], 2)}


def run_setfit(data: str, shots: int, seed: int, iterations: Optional[int] = None) -> dict:
    """SetFit 1.2.0 on this seed's rows: its defaults (every unique pair, oversampled), or `iterations` rounds of one
    positive and one negative pair per example (`num_iterations`, the SetFit paper's setting is 20)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from thrifty.models.loading import default_model_dir, quiet_transformers

    quiet_transformers()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, scored = rows(data, shots, seed, Path(tmp))
        train = Dataset.from_dict({"text": prepared.train.texts, "label": prepared.train.labels})
        model = SetFitModel.from_pretrained(str(default_model_dir()))
        trainer = Trainer(model=model, train_dataset=train,
                          args=TrainingArguments(output_dir=tmp, batch_size=16, seed=seed, report_to="none",
                                                 **({"num_iterations": iterations} if iterations else {})))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        predicted = np.asarray(model.predict(scored.texts, batch_size=128))
    gold = np.asarray(scored.labels)
    from sklearn.metrics import f1_score

    return {"accuracy": float((predicted == gold).mean()), "macro_f1": float(f1_score(gold, predicted, average="macro")),
            "scored_rows": len(gold), "train_rows": len(prepared.train), "train_seconds": round(seconds, 2),
            "setfit_num_iterations": iterations or "default (every unique pair, oversampled)"}


def run_zero_shot(data: str, shots: int, seed: int) -> dict:
    """Label names alone, no labelled example: `thrifty zeroshot` (each text gets the label whose description, the
    same anchor text thrifty's fewshot uses, is nearest in the encoder's sentence embedding), then `thrifty predict`
    on the scored rows. The seed's rows are read only for the label names and the scored split; nothing is trained."""
    import numpy as np

    import thrifty

    with tempfile.TemporaryDirectory() as tmp:
        prepared, scored = rows(data, shots, seed, Path(tmp))
        names = prepared.label_names
        started = time.perf_counter()
        folder = thrifty.zeroshot(names, Path(tmp) / "zeroshot", descriptions=DATA[data].get("descriptions"))
        built = time.perf_counter() - started
        predicted = np.asarray([names.index(p["label"]) for p in thrifty.predict(folder, scored.texts)])
        seconds = time.perf_counter() - started
    gold = np.asarray(scored.labels)
    from sklearn.metrics import f1_score

    return {"accuracy": float((predicted == gold).mean()), "macro_f1": float(f1_score(gold, predicted, average="macro")),
            "scored_rows": len(gold), "train_rows": 0, "train_seconds": round(built, 2),
            "predict_seconds": round(seconds - built, 2)}


# The headline pair gets the same information, the labelled examples only: thrifty without label anchors against
# SetFit. thrifty as shipped also reads the label names (or the descriptions DATA gives): a separate, named row, run in
# the same rounds. `full` (plain fine-tuning at this N) runs on request.
HEADLINE = ("thrifty-no-anchors", "setfit")
COMPARED = (*HEADLINE, "thrifty")
# SetFit with the SetFit paper's num_iterations=20 (40 pairs per example) for the cells where its default list of
# every unique pair takes hours on this machine (many classes or 64 per class), and num_iterations=4 where even 20
# would (Banking77 at 64 per class): named as such in every table; the summary compares with the first one run.
SETFIT_ITERATIONS = ("setfit-iter20", "setfit-iter4")
# Each one change to thrifty's fewshot, run on request (--systems ...): what each of its choices is worth.
# thrifty-self-training: data.unlabelled = the training pool's texts; thrifty-pseudoK: the same, K per class.
ABLATIONS = ("thrifty-3epochs", "thrifty-unchunked", "thrifty-described", "thrifty-no-anchors",
             "thrifty-trained-embeddings", "thrifty-self-training", "thrifty-pseudo16", "thrifty-pseudo64",
             "thrifty-pseudo128", "thrifty-e2e0", "thrifty-e2e2", "thrifty-e2e3")
SYSTEMS = COMPARED + ("full",) + SETFIT_ITERATIONS + tuple(a for a in ABLATIONS if a not in COMPARED) + ("zero-shot",)
NAMED = {"thrifty-no-anchors": "thrifty, examples only", "thrifty": "thrifty + label names",
         "setfit": "SetFit (defaults)"}


def run_system(system: str, seed: int, args: argparse.Namespace) -> dict:
    if system == "setfit":
        return run_setfit(args.data, args.shots, seed)
    if system.startswith("setfit-iter"):
        return run_setfit(args.data, args.shots, seed, int(system.removeprefix("setfit-iter")))
    if system == "zero-shot":
        return run_zero_shot(args.data, args.shots, seed)
    if system == "full":
        return run_thrifty(args.data, args.shots, seed, "full")
    return run_thrifty(args.data, args.shots, seed, "fewshot", system)


def mean_std(values: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    values = [v * scale for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(std)}"


def versus(t: list[dict], s: list[dict], name: str, setfit: str) -> str:
    """One line: thrifty system `name` against SetFit on the seeds both ran: accuracy, seeds won, training time."""
    seeds = sorted({r["seed"] for r in t} & {r["seed"] for r in s})
    t, s = [r for r in t if r["seed"] in seeds], [r for r in s if r["seed"] in seeds]
    gain = statistics.mean(r["accuracy"] for r in t) - statistics.mean(r["accuracy"] for r in s)
    ratio = statistics.mean(r["train_seconds"] for r in t) / statistics.mean(r["train_seconds"] for r in s)
    wins = sum(1 for seed in seeds if next(r["accuracy"] for r in t if r["seed"] == seed)
               >= next(r["accuracy"] for r in s if r["seed"] == seed))
    return (f"{name} - {setfit} mean accuracy: **{100 * gain:+.1f} points** (ahead or level on {wins} of {len(seeds)} "
            f"seeds); training time / SetFit's: **{ratio:.2f}x**.")


def summarise(saved: dict, args: argparse.Namespace) -> list[str]:
    lines = head_by_cpu(f"Few-shot: {args.data}, {args.shots} examples per class",
                        f"python benchmarks/fewshot_vs_setfit.py --data {args.data} --shots {args.shots}", saved,
                        "all-MiniLM-L6-v2; each run a fresh process, order alternated per seed; the same rows per seed "
                        "for every system. `thrifty-no-anchors` is given what SetFit is given, the labelled examples; "
                        "`thrifty` also reads the label names (or the short descriptions in the script's DATA).")
    for cpu, runs in by_cpu(saved).items():
        lines += table_by_cpu(cpu, runs, ["system", "seeds", "accuracy % mean ± std", "per seed", "macro F1 %",
                                          "train s mean ± std", "process s median", "validation accuracy %"])
        by = {s: [r for r in runs if r["system"] == s] for s in SYSTEMS}
        for system, rs in by.items():
            if not rs:
                continue
            dev = [r["validation_accuracy"] for r in rs if "validation_accuracy" in r]
            shown = f"{system} ({NAMED[system]})" if system in NAMED else system
            lines.append(f"| {shown} | {len(rs)} | {mean_std([r['accuracy'] for r in rs], 100)} | "
                         f"{', '.join('%.1f' % (100 * r['accuracy']) for r in sorted(rs, key=lambda r: r['seed']))} | "
                         f"{mean_std([r['macro_f1'] for r in rs], 100)} | {mean_std([r['train_seconds'] for r in rs])} | "
                         f"{statistics.median(r['process_wall_seconds'] for r in rs):.0f} | "
                         f"{mean_std(dev, 100) if len(dev) == len(rs) else '-'} |")
        setfit = "setfit" if by["setfit"] else next((s for s in SETFIT_ITERATIONS if by[s]), None)
        if setfit:
            for system in ("thrifty-no-anchors", "thrifty"):
                if by[system]:
                    lines += ["", versus(by[system], by[setfit], f"{system} ({NAMED[system]})", setfit)]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA), default="sst2")
    parser.add_argument("--shots", type=int, default=8)
    compare(__file__, "fewshot_{data}_{shots}", SYSTEMS, run_system, summarise, parser,
            settings={"backbone": "all-MiniLM-L6-v2", "batch_size": 16, "thrifty_lr": 2e-4, "setfit": "1.2.0 defaults (setfit-iter20/-iter4: num_iterations=20/4)"},
            worker_args=lambda a: ["--data", a.data, "--shots", str(a.shots)], default_seeds="0,1,2,3,4",
            default_systems=COMPARED)
