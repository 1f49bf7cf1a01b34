"""Counterfactual data augmentation (`data.counterfactual_augmentation`): each training text that mentions an
identity word gets a copy with the words swapped ("he" -> "she", "Christian" -> "Muslim"), label kept, so that the
model sees both sides of every such sentence. A mitigation that `thrifty audit` measures (docs/audit.md); the
default term map is resources/counterfactual_terms.yaml, `data.counterfactual_terms` a file in its layout.

Only the training split is augmented. A copy that already is a training text, or is a validation or test text, is
not added (the latter would leak an evaluation text into training). The counts go into data_report.json."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from thrifty.errors import DataError


def load_term_map(path: Optional[str] = None) -> dict[str, str]:
    """word -> replacement (lower case) from `pairs`, `one_way` and `cycles` of the default or the given YAML."""
    import yaml

    if path is None:
        from importlib import resources

        text = resources.files("thrifty.resources").joinpath("counterfactual_terms.yaml").read_text(encoding="utf-8")
        source = "thrifty's counterfactual_terms.yaml"
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"data.counterfactual_terms not found: {file}; give a YAML file with pairs: [[he, she], ...] "
                            "(and optionally one_way: {him: her} and cycles: [[a, b, c], ...])")
        text, source = file.read_text(encoding="utf-8"), str(file)
    loaded = yaml.safe_load(text) or {}
    if not isinstance(loaded, dict) or not set(loaded) <= {"pairs", "one_way", "cycles"}:
        raise DataError(f"{source} must be a mapping with pairs, one_way and/or cycles, e.g. pairs: [[he, she]]")
    mapping: dict[str, str] = {}
    for pair in loaded.get("pairs") or []:
        if not isinstance(pair, list) or len(pair) != 2:
            raise DataError(f"{source}: pairs entry {pair!r} must be two words, e.g. [he, she]")
        a, b = (str(w).lower() for w in pair)
        mapping[a], mapping[b] = b, a
    for cycle in loaded.get("cycles") or []:
        if not isinstance(cycle, list) or len(cycle) < 2:
            raise DataError(f"{source}: cycles entry {cycle!r} must list two or more words")
        words = [str(w).lower() for w in cycle]
        mapping.update({w: words[(i + 1) % len(words)] for i, w in enumerate(words)})
    mapping.update({str(a).lower(): str(b).lower() for a, b in (loaded.get("one_way") or {}).items()})
    if not mapping:
        raise DataError(f"{source} has no words to swap")
    return mapping


def _cased(replacement: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def swap(text: str, mapping: dict[str, str], pattern: re.Pattern) -> tuple[str, list[str]]:
    """The text with every mapped word replaced at once (so he -> she and she -> he do not undo each other)."""
    found: list[str] = []

    def replace(match: re.Match) -> str:
        word = match.group(0)
        found.append(word.lower())
        return _cased(mapping[word.lower()], word)

    return pattern.sub(replace, text), found


def augment(texts: list[str], labels: list[int], mapping: dict[str, str], avoid: set[str]
            ) -> tuple[list[str], list[int], dict[str, Any]]:
    """(texts + copies, labels + their labels, counts); `avoid`: evaluation texts a copy must not become."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(mapping, key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    existing = set(texts)
    new_texts, new_labels, words = [], [], Counter()
    counts = {"texts_with_terms": 0, "added": 0, "already_in_train": 0, "dropped_as_evaluation_text": 0}
    for text, label in zip(texts, labels):
        copy, found = swap(text, mapping, pattern)
        if not found:
            continue
        counts["texts_with_terms"] += 1
        words.update(found)
        if copy in existing:
            counts["already_in_train"] += 1
        elif copy in avoid:
            counts["dropped_as_evaluation_text"] += 1
        else:
            existing.add(copy)
            new_texts.append(copy)
            new_labels.append(label)
    counts["added"] = len(new_texts)
    counts["most_swapped"] = dict(words.most_common(10))
    return texts + new_texts, labels + new_labels, counts
