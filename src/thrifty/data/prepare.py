"""From files to clean, split, label-encoded data, with a report of every change.

Order of work: read -> normalise each text -> drop rows that cannot be used -> de-duplicate the training
set -> split (stratified, seeded) when no validation file is given -> check labels of the evaluation sets
-> remove train/eval leakage -> subsample. Each step counts what it dropped or changed in the data report,
which is printed and saved as ``data_report.json``: a row never disappears without a number saying so.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import numpy as np

from thrifty.config import DataConfig
from thrifty.data.readers import Table, delimiter_name, read_table
from thrifty.errors import DataError

IMBALANCE_WARNING_RATIO = 10.0


@dataclass
class Split:
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class PreparedData:
    train: Split
    validation: Split
    test: Optional[Split]
    label_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def normalise_text(text: str, config: DataConfig) -> str:
    if config.unicode_normalization != "none":
        text = unicodedata.normalize(config.unicode_normalization, text)
    text = " ".join(text.split())  # trims and collapses every run of whitespace, newlines included
    if config.lowercase:
        text = text.lower()
    return text


def clean_table(table: Table, config: DataConfig) -> tuple[list[str], list[Optional[str]], dict[str, int]]:
    """Normalise texts and drop unusable rows; returns texts, labels and the counts of what changed."""
    counts = {"rows_read": len(table.texts), **table.notes}
    counts.update(texts_normalised=0, texts_truncated_to_max_chars=0, dropped_empty_text=0, dropped_missing_label=0)
    labels_in = table.labels if table.labels is not None else [None] * len(table.texts)
    texts, labels = [], []
    for text, label in zip(table.texts, labels_in):
        if len(text) > config.max_chars:
            text = text[: config.max_chars]
            counts["texts_truncated_to_max_chars"] += 1
        clean = normalise_text(text, config)
        if clean != text:
            counts["texts_normalised"] += 1
        if not clean:
            counts["dropped_empty_text"] += 1
            continue
        if table.labels is not None and label is None:
            counts["dropped_missing_label"] += 1
            continue
        texts.append(clean)
        labels.append(label)
    return texts, labels, counts


def deduplicate(texts: list[str], labels: list[str], config: DataConfig) -> tuple[list[str], list[str], dict[str, int]]:
    """Handle repeated texts in the training set: exact duplicates and conflicting labels."""
    by_text: dict[str, Counter] = {}
    for text, label in zip(texts, labels):
        by_text.setdefault(text, Counter())[label] += 1
    conflicting = {t for t, c in by_text.items() if len(c) > 1}
    counts = {"dropped_duplicates": 0, "conflicting_texts": len(conflicting), "dropped_conflicting_rows": 0}
    out_texts, out_labels, seen = [], [], set()
    for text, label in zip(texts, labels):
        if text in conflicting and config.conflicts != "keep":
            if config.conflicts == "drop":
                counts["dropped_conflicting_rows"] += 1
                continue
            majority, top = by_text[text].most_common(1)[0]
            tied = sum(1 for n in by_text[text].values() if n == top) > 1
            if tied or label != majority:  # a tie has no majority: drop every copy
                counts["dropped_conflicting_rows"] += 1
                continue
        key = (text, label)
        if key in seen and config.duplicates == "drop":
            counts["dropped_duplicates"] += 1
            continue
        seen.add(key)
        out_texts.append(text)
        out_labels.append(label)
    return out_texts, out_labels, counts


def order_labels(labels: list[str], fixed: Optional[list[str]]) -> list[str]:
    if fixed:
        unknown = sorted(set(labels) - set(fixed))
        if unknown:
            raise DataError(f"training labels {unknown[:5]} are not in data.labels; add them to data.labels or remove data.labels")
        return list(fixed)
    unique = set(labels)
    if all(label.lstrip("-").isdigit() for label in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def carve_validation(train: list, seed: int, fraction: float, report: dict[str, Any], unit: str) -> tuple[list, list]:
    """Unlabelled documents or instruction examples without a validation file: a seeded `fraction` of them held out
    (at least one), recorded in the report; (train, validation)."""
    if len(train) < 2:
        raise DataError(f"{report['files']['train']} has a single {unit}: too few to hold one out for validation; "
                        f"add {unit}s or give data.validation")
    order = np.random.default_rng(seed).permutation(len(train))
    held = max(1, round(len(train) * fraction))
    report["splits"]["validation"] = {"carved_from_train": held, "fraction": fraction}
    return [train[i] for i in sorted(order[held:])], [train[i] for i in sorted(order[:held])]


def keep_distinct(items: list, key: Callable[[Any], Hashable], empty: Callable[[Any], bool], duplicates: str,
                  counts: dict[str, Any], empty_count: str) -> list:
    """The items in order without the empty ones (counted under `empty_count`) and, when `duplicates` is "drop",
    without those whose key an earlier item had (counted as dropped_duplicates): unlabelled documents and
    instruction examples (labelled texts also weigh conflicting labels: dedupe)."""
    kept, seen = [], set()
    for item in items:
        k = key(item)
        if empty(item):
            counts[empty_count] += 1
        elif k in seen and duplicates == "drop":
            counts["dropped_duplicates"] += 1
        else:
            seen.add(k)
            kept.append(item)
    return kept


def seeded_subsample(items: list, count: Optional[int], seed: int, counts: dict[str, Any]) -> list:
    """A seeded sample of `count` items in their order (all of them when count is None or larger), counted."""
    if count is None or count >= len(items):
        return items
    counts["subsampled_to"] = count
    return [items[i] for i in sorted(np.random.default_rng(seed).permutation(len(items))[:count])]


def stratified_pick(labels: list[int], fraction: float | None, count: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified, seeded sample: by fraction (a split) or by exact total count (a subsample).

    Classes keep their share; by count, remainders go to the classes with the largest fractional quota,
    and every class with at least two rows keeps at least one on each side of a split.
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    classes = np.unique(labels_arr)
    total = len(labels_arr)
    if count is not None:
        exact = {c: count * np.sum(labels_arr == c) / total for c in classes}
        quota = {c: int(np.floor(q)) for c, q in exact.items()}
        for c in sorted(classes, key=lambda c: exact[c] - quota[c], reverse=True)[: count - sum(quota.values())]:
            quota[c] += 1
    else:
        quota = {}
        for c in classes:
            n = int(np.sum(labels_arr == c))
            quota[c] = 0 if n < 2 else min(n - 1, max(1, int(round(n * fraction))))
    picked = []
    for c in classes:
        members = np.flatnonzero(labels_arr == c)
        picked.append(rng.permutation(members)[: quota[c]])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def _per_class_sample(train: Split, per_class: int, label_names: list[str], seed: int, counts: dict,
                      short_classes: str = "error") -> Split:
    """The few-shot protocol: exactly `per_class` training rows of every class, drawn with the seed (the same rows
    for the same seed, whatever else the config says). Validation and test are left whole. A class with fewer rows
    is refused, or with short_classes "keep" kept whole (at most `per_class` rows per class)."""
    by_class: dict[int, list[int]] = {c: [] for c in range(len(label_names))}  # a class with no rows is short too
    for i, label in enumerate(train.labels):
        by_class[label].append(i)
    short = sorted((len(rows), label_names[c]) for c, rows in by_class.items() if len(rows) < per_class)
    if short and short_classes == "error":
        have, name = short[0]
        raise DataError(f"data.examples_per_class={per_class} but class '{name}' has only {have} training examples"
                        + (f" ({len(short)} classes have fewer than {per_class})" if len(short) > 1 else "")
                        + f"; lower it to {have}, add examples, or set data.short_classes: keep (at most "
                        f"{per_class} per class)")
    rng = np.random.default_rng(seed)
    picked = sorted(int(i) for c in sorted(by_class) for i in rng.permutation(by_class[c])[:per_class])
    counts["examples_per_class"] = per_class
    if short:
        counts["short_classes_kept_whole"] = {name: have for have, name in short}
    counts["sampled_from"] = len(train)
    return _subset(train, picked)


def _encode(texts: list[str], labels: list[str], label_index: dict[str, int], role: str, config: DataConfig, counts: dict) -> Split:
    unknown = Counter(label for label in labels if label not in label_index)
    if unknown and config.unknown_labels == "error":
        shown = ", ".join(f"'{k}' ({v} rows)" for k, v in unknown.most_common(5))
        raise DataError(
            f"{role} has labels never seen in training: {shown}; add training examples for them or set --data.unknown_labels drop"
        )
    counts["dropped_unknown_label"] = sum(unknown.values())
    keep = [i for i, label in enumerate(labels) if label in label_index]
    return Split([texts[i] for i in keep], [label_index[labels[i]] for i in keep])


def _subset(split: Split, idx) -> Split:
    return Split([split.texts[i] for i in idx], [split.labels[i] for i in idx])


def prepare_data(config: DataConfig, seed: int) -> PreparedData:
    report: dict[str, Any] = {"files": {}, "splits": {}, "warnings": []}

    def load(path: str, role: str):
        table = read_table(path, role=role, fmt=config.format, text_column=config.text_column,
                           label_column=config.label_column, encoding_errors=config.encoding_errors,
                           delimiter=config.delimiter)
        report["files"][role] = table.source
        if table.delimiter is not None:  # which delimiter split the columns, and how it was chosen
            report.setdefault("delimiters", {})[role] = {"delimiter": table.delimiter, "chosen": table.delimiter_chosen}
        texts, labels, counts = clean_table(table, config)
        report["splits"][role] = counts
        return texts, labels, counts

    train_texts, train_labels, train_counts = load(config.train, "train")
    train_texts, train_labels, dedup_counts = deduplicate(train_texts, train_labels, config)
    train_counts.update(dedup_counts)
    if not train_texts:
        raise DataError(f"no usable training rows in {report['files']['train']} after cleaning (see counts: {train_counts}); check the text and label columns")

    label_names = order_labels(train_labels, config.labels)
    if len(set(train_labels)) < 2:
        only = train_labels[0]
        raise DataError(f"training data has only one class ('{only}'); a classifier needs examples of at least two labels")
    label_index = {name: i for i, name in enumerate(label_names)}
    train = Split(train_texts, [label_index[label] for label in train_labels])

    if config.validation:
        val_texts, val_labels, val_counts = load(config.validation, "validation")
        validation = _encode(val_texts, val_labels, label_index, "validation", config, val_counts)
    else:
        train, validation = _carve_stratified_validation(train, config.validation_fraction, seed, report)

    test = None
    if config.test:
        test_texts, test_labels, test_counts = load(config.test, "test")
        test = _encode(test_texts, test_labels, label_index, "test", config, test_counts)

    train, validation, test = _remove_leakage(train, validation, test, config.leakage, report)
    train, validation = _subsample(train, validation, label_names, config, seed, report)
    if config.counterfactual_augmentation:  # training split only; never a copy that is an evaluation text
        train = _augment_counterfactuals(train, validation, test, config, report)
    _check_splits(train, validation, label_names, report)
    _describe(report, train, validation, test, label_names)
    return PreparedData(train, validation, test, label_names, report)


def _carve_stratified_validation(train: Split, fraction: float, seed: int,
                                 report: dict[str, Any]) -> tuple[Split, Split]:
    """No validation file: a stratified, seeded `fraction` of the training rows held out; (train, validation)."""
    picked = stratified_pick(train.labels, fraction, None, seed)
    mask = np.zeros(len(train), dtype=bool)
    mask[picked] = True
    validation = _subset(train, np.flatnonzero(mask))
    train = _subset(train, np.flatnonzero(~mask))
    report["splits"]["validation"] = {"carved_from_train": len(validation), "fraction": fraction}
    return train, validation


def _remove_leakage(train: Split, validation: Split, test: Optional[Split], leakage: str,
                    report: dict[str, Any]) -> tuple[Split, Split, Optional[Split]]:
    """Leakage: an evaluation text that is also a training text measures memory, not generalisation. Counted, and
    by data.leakage refused, kept, or dropped from the evaluation set or from training; (train, validation, test)."""
    train_set = set(train.texts)
    for role, split in (("validation", validation), ("test", test)):
        if split is None:
            continue
        overlap = {t for t in split.texts if t in train_set}
        counts = report["splits"][role]
        counts["overlap_with_train"] = len(overlap)
        if not overlap or leakage == "keep":
            continue
        if leakage == "error":
            raise DataError(f"{len(overlap)} {role} texts also occur in training data (leakage); remove them or set --data.leakage drop_from_train")
        if leakage == "drop_from_eval":
            keep = [i for i, t in enumerate(split.texts) if t not in overlap]
            counts["dropped_leaked_rows"] = len(split) - len(keep)
            if role == "validation":
                validation = _subset(split, keep)
            else:
                test = _subset(split, keep)
        else:
            keep = [i for i, t in enumerate(train.texts) if t not in overlap]
            report["splits"]["train"][f"dropped_leaked_into_{role}"] = len(train) - len(keep)
            train = _subset(train, keep)
            train_set = set(train.texts)
    return train, validation, test


def _subsample(train: Split, validation: Split, label_names: list[str], config: DataConfig, seed: int,
               report: dict[str, Any]) -> tuple[Split, Split]:
    """data.max_train_examples (stratified), then data.examples_per_class (the few-shot protocol), then
    data.max_eval_examples (stratified) on validation; each counted; (train, validation)."""
    if config.max_train_examples is not None and config.max_train_examples < len(train):
        report["splits"]["train"]["subsampled_to"] = config.max_train_examples
        train = _subset(train, stratified_pick(train.labels, None, config.max_train_examples, seed))
    if config.examples_per_class is not None:
        train = _per_class_sample(train, config.examples_per_class, label_names, seed, report["splits"]["train"],
                                  config.short_classes)
    if config.max_eval_examples is not None and config.max_eval_examples < len(validation):
        report["splits"]["validation"]["subsampled_to"] = config.max_eval_examples
        validation = _subset(validation, stratified_pick(validation.labels, None, config.max_eval_examples, seed))
    return train, validation


def _augment_counterfactuals(train: Split, validation: Split, test: Optional[Split], config: DataConfig,
                             report: dict[str, Any]) -> Split:
    """The training split with counterfactual copies added (data/counterfactual.py), none of them an evaluation
    text; counted in the report."""
    from thrifty.data.counterfactual import augment, load_term_map

    avoid = set(validation.texts) | (set(test.texts) if test is not None else set())
    texts, labels, cda = augment(train.texts, train.labels, load_term_map(config.counterfactual_terms), avoid)
    report["counterfactual_augmentation"] = cda
    report["splits"]["train"]["counterfactual_copies_added"] = cda["added"]
    return Split(texts, labels)


def _check_splits(train: Split, validation: Split, label_names: list[str], report: dict[str, Any]) -> None:
    """The final splits can train and be judged: a validation row and two training classes; a label with no
    training row is a warning."""
    if len(validation) == 0:
        raise DataError("the validation set is empty; give data.validation a file or raise data.validation_fraction")
    if len(set(train.labels)) < 2:
        raise DataError("after splitting, the training set has only one class; add data or lower data.validation_fraction")
    missing = [label_names[i] for i in range(len(label_names)) if i not in set(train.labels)]
    if missing:
        report["warnings"].append(f"labels with no training example after splitting: {missing[:10]}")


def _describe(report: dict[str, Any], train: Split, validation: Split, test: Optional[Split],
              label_names: list[str]) -> None:
    """The report's labels, class counts per split, imbalance ratio and sizes, and the warnings they call for."""
    class_counts = Counter(train.labels)
    ratio = max(class_counts.values()) / max(1, min(class_counts.values()))
    report["labels"] = label_names
    report["class_counts"] = {
        role: {label_names[k]: v for k, v in sorted(Counter(split.labels).items())}
        for role, split in (("train", train), ("validation", validation), ("test", test)) if split is not None
    }
    report["imbalance_ratio"] = round(ratio, 2)
    if ratio > IMBALANCE_WARNING_RATIO:
        report["warnings"].append(
            f"class imbalance: the largest class has {ratio:.1f}x the examples of the smallest; watch macro_f1, not only accuracy"
        )
    report["sizes"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    for role, counts in report["splits"].items():
        for key in ("texts_truncated_to_max_chars", "lines_with_replaced_bytes"):
            if counts.get(key):
                report["warnings"].append(f"{role}: {counts[key]} {key.replace('_', ' ')}")


def format_report(report: dict[str, Any]) -> str:
    """A few human lines: sizes, what was dropped or changed, warnings."""
    lines = [f"data: {report['sizes']['train']} train / {report['sizes']['validation']} validation"
             + (f" / {report['sizes']['test']} test" if report["sizes"]["test"] else "")
             + (f", {len(report['labels'])} labels, imbalance ratio {report['imbalance_ratio']}" if report["labels"]
                else f" {report['format'].replace('_', '/')} examples" if "format" in report else " documents (unlabelled)")]
    by_delimiter: dict[str, list[str]] = {}
    for role, used in report.get("delimiters", {}).items():
        by_delimiter.setdefault(f"{delimiter_name(used['delimiter'])} ({used['chosen']})", []).append(role)
    for used, roles in by_delimiter.items():
        lines.append(f"  columns split by {used}: {', '.join(roles)} (data.delimiter sets it)")
    for role, counts in report["splits"].items():
        changes = {k: v for k, v in counts.items() if v and k not in ("rows_read", "fraction")}
        if changes:
            lines.append(f"  {role}: read {counts.get('rows_read', '-')}; " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    for warning in report["warnings"]:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)
