"""Evaluation results as text for a terminal."""

from __future__ import annotations

from typing import Any


def per_type_lines(metrics: dict[str, Any]) -> list[str]:
    """Token classification: precision, recall, F1 and support of each entity type (empty for other tasks)."""
    if "per_type" not in metrics:
        return []
    lines = [f"  {'type':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name, row in sorted(metrics["per_type"].items()):
        lines.append(f"  {name:<16} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>8}")
    return lines
