"""Word-tagged data for token classification (NER): CoNLL-style files and JSONL, checked BIO tags, a report.

CoNLL: one token per line with its tag in the last column (space- or tab-separated; other columns such as
POS and chunk tags are ignored), a blank line between sentences, ``-DOCSTART-`` lines skipped. Every line of
a file must have the same number of columns; a ragged line is named. JSONL: one object per line with a list
of words (``data.tokens_column``) and a list of as many tags (``data.tags_column``).

Tags are BIO (IOB2): ``O``, ``B-TYPE`` opens an entity, ``I-TYPE`` continues one. An ``I-`` that continues
nothing of its type (IOB1 files do this) is repaired into a ``B-`` and counted, or refused with
``data.invalid_tags: error``. Tags in validation or test that training never saw are refused: the model
could never predict them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from thrifty.config import DataConfig
from thrifty.data.readers import check_file, decode, json_lines, read_bytes, resolve_data_path
from thrifty.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")


@dataclass
class TaggedSplit:
    words: list[list[str]]
    tags: list[list[int]]  # label ids, one per word

    def __len__(self) -> int:
        return len(self.words)

    @property
    def texts(self) -> list[str]:
        """Each sentence as one string (for fingerprints and reports; prediction keeps words apart)."""
        return [" ".join(w) for w in self.words]


@dataclass
class TaggedData:
    train: TaggedSplit
    validation: TaggedSplit
    test: Optional[TaggedSplit]
    label_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def is_tag(value: str) -> bool:
    return value == "O" or (len(value) > 2 and value[1] == "-" and value[0] in "BI")


def read_tagged(path: str, role: str, config: DataConfig) -> tuple[list[list[str]], list[list[str]], dict[str, int]]:
    """Sentences of words and their string tags from one CoNLL or JSONL file, with counts of what was skipped."""
    file = resolve_data_path(path)
    check_file(file, role)
    suffix = file.suffix.lower()
    fmt = config.format
    if fmt == "auto":
        fmt = "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else "conll"
    if fmt not in ("conll", "jsonl") or suffix in TABLE_SUFFIXES:
        raise DataError(f"{role} file {file} is a sentence table ({fmt if fmt != 'conll' else suffix.lstrip('.')}), but task "
                        "token_classification reads CoNLL files (one token and its tag per line) or JSONL with "
                        f"'{config.tokens_column}' and '{config.tags_column}' lists; convert it, or set task: classification")
    text, bad = decode(read_bytes(file, role), str(file), config.encoding_errors)
    counts = {"lines_with_replaced_bytes": bad}
    if fmt == "jsonl":
        words, tags = _jsonl(text, str(file), config)
    else:
        words, tags, counts["docstart_lines_skipped"] = _conll(text, str(file))
    counts["rows_read"] = len(words)  # sentences
    return words, tags, counts


def _conll(text: str, source: str) -> tuple[list[list[str]], list[list[str]], int]:
    sentences, tag_lists, words, tags = [], [], [], []
    columns, docstarts = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if words:
                sentences.append(words)
                tag_lists.append(tags)
                words, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts]
        if parts[0] == "-DOCSTART-":
            docstarts += 1
            continue
        if columns is None:
            columns = len(parts)
            if columns < 2:
                raise DataError(f"line {number} of {source} has one column ({line.strip()[:40]!r}); a CoNLL file needs "
                                "a token and its tag on each line (or set task: classification for one text per line)")
        if len(parts) != columns:
            raise DataError(f"line {number} of {source} has {len(parts)} columns where the file has {columns} "
                            f"({line.strip()[:60]!r}); every token line needs the same columns, tag last")
        if not is_tag(parts[-1]):
            raise DataError(f"line {number} of {source} ends in {parts[-1][:30]!r}, not a BIO tag (O, B-TYPE, I-TYPE); "
                            "the tag must be the last column (is this a sentence file? then set task: classification)")
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        sentences.append(words)
        tag_lists.append(tags)
    return sentences, tag_lists, docstarts


def _jsonl(text: str, source: str, config: DataConfig) -> tuple[list[list[str]], list[list[str]]]:
    sentences, tag_lists = [], []
    for number, record in json_lines(text, source):
        if not isinstance(record, dict) or config.tokens_column not in record:
            raise DataError(f"line {number} of {source} has no '{config.tokens_column}' list; token_classification JSONL "
                            f"looks like {{\"{config.tokens_column}\": [...], \"{config.tags_column}\": [...]}} "
                            "(set data.tokens_column / data.tags_column, or task: classification for texts)")
        words, tags = record[config.tokens_column], record.get(config.tags_column)
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise DataError(f"line {number} of {source}: '{config.tokens_column}' and '{config.tags_column}' must be "
                            "lists of the same length (one tag per word)")
        bad = [t for t in tags if not isinstance(t, str) or not is_tag(t)]
        if bad:
            raise DataError(f"line {number} of {source}: {bad[0]!r} is not a BIO tag (O, B-TYPE, I-TYPE)")
        sentences.append([str(w) for w in words])
        tag_lists.append(list(tags))
    return sentences, tag_lists


def repair_bio(tags: list[str]) -> tuple[list[str], int]:
    """IOB2: an I-X that follows neither B-X nor I-X starts an entity, so it becomes B-X. Returns the count."""
    out, repaired, previous = [], 0, "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
            repaired += 1
        out.append(tag)
        previous = tag
    return out, repaired


def normalise_word(word: str, config: DataConfig) -> str:
    if config.unicode_normalization != "none":
        word = unicodedata.normalize(config.unicode_normalization, word)
    word = word.strip()
    return word.lower() if config.lowercase else word


def order_tags(tags: set[str]) -> list[str]:
    """O first, then by entity type, B before I: a stable, readable order."""
    return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))


def complete_bio(tags: set[str]) -> set[str]:
    """The tags with both B- and I- of every entity type among them. A small training set may hold a type only as
    one-word entities (B-X, never I-X); a two-word X in validation or test is still that type, not an unseen one."""
    types = {t[2:] for t in tags if t[:2] in ("B-", "I-")}
    return set(tags) | {f"{prefix}{kind}" for kind in types for prefix in ("B-", "I-")}


def prepare_tagged(config: DataConfig, seed: int) -> TaggedData:
    report: dict[str, Any] = {"files": {}, "splits": {}, "warnings": []}

    def load(path: str, role: str) -> tuple[list[list[str]], list[list[str]]]:
        words, tags, counts = read_tagged(path, role, config)
        report["files"][role] = str(resolve_data_path(path))
        repaired_total, kept_w, kept_t = 0, [], []
        counts.update(dropped_empty_sentences=0, words_normalised=0)
        for w, t in zip(words, tags):
            if not w:
                counts["dropped_empty_sentences"] += 1
                continue
            clean = [normalise_word(x, config) for x in w]
            counts["words_normalised"] += sum(a != b for a, b in zip(w, clean))
            fixed, repaired = repair_bio(t)
            if repaired and config.invalid_tags == "error":
                raise DataError(f"{role} file {path} has an I- tag that continues no entity of its type (sentence "
                                f"{len(kept_w) + counts['dropped_empty_sentences'] + 1}: {' '.join(t[:12])}); fix the "
                                "tags or set --data.invalid_tags repair")
            repaired_total += repaired
            kept_w.append(clean)
            kept_t.append(fixed)
        counts["tags_repaired_i_to_b"] = repaired_total
        counts["words"] = sum(len(w) for w in kept_w)
        report["splits"][role] = counts
        return kept_w, kept_t

    train_words, train_tags = load(config.train, "train")
    if not train_words:
        raise DataError(f"no sentences in {report['files']['train']}; check that it is a CoNLL or JSONL tagged file")
    seen = {t for s in train_tags for t in s}
    label_names = order_tags(complete_bio(seen))
    if config.labels:
        unknown = sorted(seen - set(config.labels))
        if unknown:
            raise DataError(f"training tags {unknown[:5]} are not in data.labels; add them or remove data.labels")
        label_names = list(config.labels)
    if len(label_names) < 2:
        raise DataError(f"training data has only the tag {label_names[0]!r}; token classification needs entity tags too")
    index = {name: i for i, name in enumerate(label_names)}

    def encode(words, tags, role: str) -> TaggedSplit:
        unknown = Counter(t for s in tags for t in s if t not in index)
        if unknown:
            shown = ", ".join(f"'{k}' ({v}x)" for k, v in unknown.most_common(5))
            raise DataError(f"{role} has tags never seen in training: {shown}; the model could not predict them — "
                            "add training sentences with them, or check that the files share one tag set")
        return TaggedSplit(words, [[index[t] for t in s] for s in tags])

    train = encode(train_words, train_tags, "train")
    rng = np.random.default_rng(seed)
    if config.validation:
        validation = encode(*load(config.validation, "validation"), "validation")
    else:
        order = rng.permutation(len(train))
        n_val = max(1, int(round(len(train) * config.validation_fraction)))
        pick = lambda idx: TaggedSplit([train.words[i] for i in idx], [train.tags[i] for i in idx])  # noqa: E731
        validation, train = pick(sorted(order[:n_val])), pick(sorted(order[n_val:]))
        report["splits"]["validation"] = {"carved_from_train": len(validation), "fraction": config.validation_fraction}
    test = encode(*load(config.test, "test"), "test") if config.test else None

    # Repeated sentences across splits are reported, not removed: published NER splits share boilerplate
    # lines (sports tables, datelines), and results are comparable only on the splits as published.
    train_set = set(map(tuple, train.words))
    for role, split in (("validation", validation), ("test", test)):
        if split is not None:
            report["splits"][role]["overlap_with_train"] = sum(tuple(w) in train_set for w in split.words)

    if config.max_train_examples is not None and config.max_train_examples < len(train):
        report["splits"]["train"]["subsampled_to"] = config.max_train_examples
        idx = sorted(rng.permutation(len(train))[: config.max_train_examples])
        train = TaggedSplit([train.words[i] for i in idx], [train.tags[i] for i in idx])
    if config.max_eval_examples is not None and config.max_eval_examples < len(validation):
        report["splits"]["validation"]["subsampled_to"] = config.max_eval_examples
        idx = sorted(rng.permutation(len(validation))[: config.max_eval_examples])
        validation = TaggedSplit([validation.words[i] for i in idx], [validation.tags[i] for i in idx])
    if len(validation) == 0:
        raise DataError("the validation set is empty; give data.validation a file or raise data.validation_fraction")

    def entity_counts(split: TaggedSplit) -> dict[str, int]:
        counts = Counter(label_names[t][2:] for s in split.tags for t in s if label_names[t].startswith("B-"))
        return dict(sorted(counts.items()))

    report["labels"] = label_names
    report["class_counts"] = {role: entity_counts(split) for role, split in
                              (("train", train), ("validation", validation), ("test", test)) if split is not None}
    train_entities = report["class_counts"]["train"]
    report["imbalance_ratio"] = round(max(train_entities.values(), default=1) / max(1, min(train_entities.values(), default=1)), 2)
    report["sizes"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    for role, counts in report["splits"].items():
        if counts.get("tags_repaired_i_to_b"):
            report["warnings"].append(f"{role}: {counts['tags_repaired_i_to_b']} I- tags that continued no entity were made B-")
    return TaggedData(train, validation, test, label_names, report)
