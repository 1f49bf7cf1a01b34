"""Public labelled data turned into instructions (prompt/completion JSONL, TRL's format) for decoder fine-tuning.

    python benchmarks/instructions.py --data emotion     # -> benchmarks/runs/instructions/emotion/{train,validation,test}.jsonl
    python benchmarks/instructions.py --data trec

- emotion (Saravia et al. 2018): "Text: {tweet}\\nEmotion:" -> " {sadness|joy|love|anger|fear|surprise}"; the
  published train / val / test files.
- trec (TREC-6, Li & Roth 2002): "Question: {question}\\nType:" -> " {description|entity|abbreviation|human|location|
  number}"; the published train and test files, a seeded 500 questions of train held out for validation (TREC has no
  validation split). Train is read as latin-1 (SOURCE.md).
- sst2: "Review: {sentence}\\nSentiment:" -> " {negative|positive}"; the published train / dev / test files.

The files stay in benchmarks/runs/ (the data sets' licenses do not cover copying them into the repository).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
OUT = REPO / "benchmarks" / "runs" / "instructions"
TREC_TYPES = ["description", "entity", "abbreviation", "human", "location", "number"]  # label ids 0..5 (SOURCE.md)
PROMPTS = {"emotion": ("Text: {text}\nEmotion:", " {label}"), "trec": ("Question: {text}\nType:", " {label}"),
           "sst2": ("Review: {text}\nSentiment:", " {label}")}


def _emotion(name: str) -> list[tuple[str, str]]:
    with open(SHARED / "emotion" / name, encoding="utf-8", newline="") as f:
        return [(row["text"], row["label_name"]) for row in csv.DictReader(f, delimiter=";")]


def _label_lines(path: Path, encoding: str, names: list[str]) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding=encoding).splitlines():
        if line.strip():
            label, _, text = line.partition(" ")
            rows.append((text.strip(), names[int(label)]))
    return rows


def splits(data: str) -> dict[str, list[tuple[str, str]]]:
    """(text, label word) rows of each published split."""
    if data == "emotion":
        return {"train": _emotion("train.txt"), "validation": _emotion("val.txt"), "test": _emotion("test.txt")}
    if data == "trec":
        train = _label_lines(SHARED / "trec" / "TREC.train.all", "latin-1", TREC_TYPES)
        held = set(random.Random(0).sample(range(len(train)), 500))
        return {"train": [r for i, r in enumerate(train) if i not in held],
                "validation": [r for i, r in enumerate(train) if i in held],
                "test": _label_lines(SHARED / "trec" / "TREC.test.all", "latin-1", TREC_TYPES)}
    if data == "sst2":
        names = ["negative", "positive"]
        return {split: _label_lines(SHARED / "sst2" / f"stsa.binary.{name}", "utf-8", names)
                for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    raise SystemExit(f"unknown data set {data}; choose emotion, trec or sst2")


def write(data: str, out: Path = OUT) -> Path:
    """The three JSONL files of `data` in out/data/; returns that folder."""
    prompt, completion = PROMPTS[data]
    folder = out / data
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits(data).items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for text, label in rows:
                f.write(json.dumps({"prompt": prompt.format(text=text), "completion": completion.format(label=label)},
                                   ensure_ascii=False) + "\n")
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="emotion", choices=sorted(PROMPTS))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    print(write(args.data, Path(args.out)))
