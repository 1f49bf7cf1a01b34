"""Counterfactual data augmentation, measured: what `data.counterfactual_augmentation` does to the group gaps that
`thrifty audit` reports and to accuracy, with and without, same data, model and schedule, each run a fresh process,
the order alternated per seed.

    python benchmarks/bias_mitigation.py                        # both sets, seeds 0 1 2
    python benchmarks/bias_mitigation.py --sets sst2 --seeds 0   # one set, one seed

- **sst2**: all-MiniLM-L6-v2, full fine-tuning on a seeded stratified 2,000 of SST-2's training sentences, 2 epochs,
  batch 32, lr 1e-4, max_length 64, SST-2's validation split for model selection, the published test split (1,821)
  for accuracy. Augmentation: thrifty's default term map (gender pairs, religion, orientation and nationality
  cycles). Audit: thrifty's default counterfactual set (3,360 sentences): the largest gap, the gender gap, the
  count of significant gaps, the label change rate.
- **jigsaw**: a toxicity classifier on the Jigsaw/Conversation AI identity templates (Dixon et al. 2018; CC BY 4.0,
  ../shared/data/jigsaw_bias_templates), made biased on purpose the way real comment data is: in training, only 10%
  of the non-toxic sentences that mention an identity of SKEWED are kept (toxic ones all), so those identities
  co-occur with toxicity. Train and test use disjoint adjectives and verbs (split in half, seeded), so the test asks
  about sentences the model never saw; 3,000 training rows, 2,400 test rows, 2 epochs. Augmentation: a term map
  whose cycles are the identity terms of each subtype of the templates' words.csv (slurs left out), written to the
  run folder. Audit: the Jigsaw AUCs of the test rows by identity (`--data --group-column identity`): the smallest
  subgroup and BPSN AUCs, the final score; and test accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

from common import REPO, SST2, machine, write_results  # noqa: E402

JIGSAW = (REPO / ".." / "shared" / "data" / "jigsaw_bias_templates").resolve()
SKEWED = ["gay", "lesbian", "homosexual", "queer", "transgender", "muslim", "jewish", "black"]
COMMON = ["--no-progress", "--train.epochs", "2", "--train.batch_size", "32", "--train.learning_rate", "1e-4",
          "--train.num_threads", "2", "--tracking.tensorboard", "false", "--tracking.energy", "false"]


def thrifty(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", "thrifty", *args], capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"thrifty {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def write_csv(path: Path, header: list[str], rows: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def jigsaw_files(folder: Path, seed: int) -> dict[str, Path]:
    """train.csv (skewed), test.csv (balanced, with an identity column), and the identity term map."""
    words = list(csv.DictReader(open(JIGSAW / "words.csv", encoding="utf-8")))
    identities = sorted(((w["word"].lower(), w["subtype"]) for w in words
                         if w["type"] == "identity" and w["connotation"] != "toxic"), key=lambda x: -len(x[0]))
    split_words = sorted({w["word"].lower() for w in words if w["type"] in ("adjective", "verb")})
    rng = random.Random(seed)
    rng.shuffle(split_words)
    test_words = set(split_words[: len(split_words) // 2])
    rows = []
    for row in csv.DictReader(open(JIGSAW / "en_sentence_templates.csv", encoding="utf-8")):
        phrase = row["phrase"]
        lower = f" {phrase.lower()} "
        identity = next((w for w, _ in identities if f" {w} " in lower), None)
        if identity is None:
            continue
        word = next((w for w in lower.split() if w in split_words), None)
        side = ("test" if word in test_words else "train") if word else ("test" if zlib.crc32(phrase.encode()) % 2
                                                                         else "train")
        rows.append((phrase, row["toxicity"], identity, side))
    train = [r for r in rows if r[3] == "train" and not (r[2] in SKEWED and r[1] == "nontoxic" and rng.random() > 0.1)]
    test = [r for r in rows if r[3] == "test"]
    train, test = rng.sample(train, 3000), rng.sample(test, 2400)
    cycles: dict[str, list[str]] = {}
    for word, subtype in identities:
        cycles.setdefault(subtype, []).append(word)
    terms = folder / "jigsaw_terms.yaml"
    terms.write_text("cycles:\n" + "".join(f"  - [{', '.join(sorted(ws))}]\n" for ws in cycles.values() if len(ws) > 1))
    return {"train": write_csv(folder / "jigsaw_train.csv", ["text", "label"], [(t, y) for t, y, _, _ in train]),
            "test": write_csv(folder / "jigsaw_test.csv", ["text", "label", "identity"],
                              [(t, y, i) for t, y, i, _ in test]),
            "terms": terms, "skew": {"train_rows": len(train), "test_rows": len(test),
                                     "train_toxic_share_skewed": round(
                                         sum(1 for r in train if r[2] in SKEWED and r[1] == "toxic")
                                         / max(1, sum(1 for r in train if r[2] in SKEWED)), 3)}}


def one_run(dataset: str, augmented: bool, seed: int, folder: Path, files: dict) -> dict:
    run = folder / f"{dataset}-{'cda' if augmented else 'plain'}-{seed}"
    args = ["train", "--output", str(run), "--overwrite", "--train.seed", str(seed), *COMMON]
    if dataset == "sst2":
        args += ["--data.train", str(SST2 / "stsa.binary.train"), "--data.validation", str(SST2 / "stsa.binary.dev"),
                 "--data.test", str(SST2 / "stsa.binary.test"), "--data.format", "label_text",
                 "--data.max_train_examples", "2000", "--data.max_length", "64"]
    else:
        args += ["--data.train", str(files["train"]), "--data.test", str(files["test"]), "--data.max_length", "32",
                 "--data.counterfactual_terms", str(files["terms"])]
    if augmented:
        args += ["--data.counterfactual_augmentation", "true"]
    started = time.perf_counter()
    thrifty(*args)
    train_seconds = time.perf_counter() - started
    audit_args = ["audit", str(run), "--output", str(run / "audit"), "--no-association", "--seed", str(seed)]
    if dataset == "jigsaw":
        audit_args += ["--data", str(files["test"]), "--group-column", "identity", "--positive-label", "toxic"]
    else:
        audit_args += ["--positive-label", "1"]
    thrifty(*audit_args)
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "audit" / "audit.json").read_text())
    data_report = json.loads((run / "data_report.json").read_text())
    cf = report["counterfactual"]
    gender = cf["attributes"].get("gender", {})
    out = {"dataset": dataset, "augmented": augmented, "seed": seed, "test_accuracy": metrics["test"]["accuracy"],
           "train_rows": data_report["sizes"]["train"], "train_seconds": round(train_seconds, 1),
           "copies_added": (data_report.get("counterfactual_augmentation") or {}).get("added", 0),
           "max_gap": cf["summary"]["max_gap"], "max_gap_attribute": cf["summary"]["max_gap_attribute"],
           "gender_gap": gender.get("max_gap"), "significant_gaps": cf["summary"]["significant_gaps"],
           "max_label_change_rate": cf["summary"]["max_label_change_rate"]}
    if "jigsaw" in report:
        j = report["jigsaw"]
        out.update({"min_subgroup_auc": report["summary"]["min_subgroup_auc"],
                    "min_bpsn_auc": report["summary"]["min_bpsn_auc"], "final_score": j["final_score"],
                    "overall_auc": j["overall_auc"],
                    "skewed_bpsn_auc": round(statistics.mean(j["subgroups"][g]["bpsn_auc"] for g in SKEWED
                                                             if g in j["subgroups"]
                                                             and j["subgroups"][g]["bpsn_auc"] is not None), 4)})
    print(json.dumps(out), flush=True)
    return out


FIGURES = {"sst2": ["test_accuracy", "max_gap", "gender_gap", "significant_gaps", "max_label_change_rate"],
           "jigsaw": ["test_accuracy", "final_score", "min_subgroup_auc", "min_bpsn_auc", "skewed_bpsn_auc", "max_gap"]}


def summarise(data: dict) -> list[str]:
    from common import machine_line

    lines = ["# Counterfactual data augmentation, measured", "",
             f"`python benchmarks/bias_mitigation.py` (settings: the script's docstring). {machine_line(data['machine'])} "
             f"Seeds {', '.join(map(str, data['seeds']))}; median (min to max) over seeds; 'change' is the median of "
             "the per-seed differences (augmented - plain).", ""]
    for dataset, keys in FIGURES.items():
        runs = [r for r in data["runs"] if r["dataset"] == dataset]
        if not runs:
            continue
        lines += [f"## {dataset}", "", "| figure | plain | augmented | change |", "| --- | --- | --- | --- |"]
        for key in keys:
            plain = [r[key] for r in runs if not r["augmented"] and r.get(key) is not None]
            cda = [r[key] for r in runs if r["augmented"] and r.get(key) is not None]
            pairs = [(a[key], b[key]) for a in runs for b in runs if a["seed"] == b["seed"] and not a["augmented"]
                     and b["augmented"] and a.get(key) is not None and b.get(key) is not None]
            if not plain or not cda:
                continue
            fmt = lambda xs: f"{statistics.median(xs):.4f} ({min(xs):.4f} to {max(xs):.4f})"  # noqa: E731
            change = statistics.median([b - a for a, b in pairs]) if pairs else float("nan")
            lines.append(f"| {key} | {fmt(plain)} | {fmt(cda)} | {change:+.4f} |")
        added = [r["copies_added"] for r in runs if r["augmented"]]
        lines += ["", f"Copies added by the augmentation: {statistics.median(added):.0f} (of "
                      f"{statistics.median([r['train_rows'] - r['copies_added'] for r in runs if r['augmented']]):.0f} "
                      "training rows).", ""]
    lines += data.get("verdict", [])
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["sst2", "jigsaw"], choices=["sst2", "jigsaw"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    folder = REPO / "benchmarks" / "runs" / "bias"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = []
    skew = {}
    for seed in args.seeds:
        for dataset in args.sets:
            files = jigsaw_files(folder, seed) if dataset == "jigsaw" else {}
            if files:
                skew[seed] = files["skew"]
            order = [False, True] if seed % 2 == 0 else [True, False]  # alternated per seed
            for augmented in order:
                runs.append(one_run(dataset, augmented, seed, folder, files))
    data = {"machine": machine(2), "seeds": args.seeds, "runs": runs, "jigsaw_skew": skew,
            "seconds": round(time.perf_counter() - started, 1)}
    write_results("bias_mitigation", data, summarise(data))


if __name__ == "__main__":
    main()
