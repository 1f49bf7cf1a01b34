"""Prediction results as files: JSON lines or CSV, for labels (with probabilities) and for entities."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence


def as_json_lines(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def labelled(texts: Sequence[str], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each text with its result: {"text", "label", "score", "probabilities"}, in input order."""
    return [{"text": text, **result} for text, result in zip(texts, results)]


def labels_csv(texts: Sequence[str], results: Sequence[dict[str, Any]], label_names: Sequence[str]) -> str:
    """One row per text: text, label, score, then p_LABEL for every label."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "score"] + [f"p_{name}" for name in label_names])
    for text, result in zip(texts, results):
        writer.writerow([text, result["label"], f"{result['score']:.6f}"]
                        + [f"{result['probabilities'][n]:.6f}" for n in label_names])
    return buffer.getvalue()


def entities_csv(results: Sequence[dict[str, Any]]) -> str:
    """One row per entity: the input's number, type, text, character start and end, score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["input", "type", "text", "start", "end", "score"])
    for n, r in enumerate(results):
        for e in r["entities"]:
            writer.writerow([n, e["type"], e["text"], e["start"], e["end"], f"{e['score']:.4f}"])
    return buffer.getvalue()
