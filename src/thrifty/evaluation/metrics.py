"""Classification metrics: accuracy, macro/micro/weighted F1, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def classification_metrics(
    labels: np.ndarray, predictions: np.ndarray, label_names: list[str], loss: Optional[float] = None
) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=ids, zero_division=0)
    out: dict[str, Any] = {
        "examples": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(labels, predictions, labels=ids, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predictions, labels=ids, average="weighted", zero_division=0)),
    }
    if loss is not None:
        out["loss"] = float(loss)
    out["per_class"] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(label_names)
    }
    out["labels"] = list(label_names)
    out["confusion_matrix"] = confusion_matrix(labels, predictions, labels=ids).tolist()
    return out


def is_better(metric: str, value: float, best: Optional[float]) -> bool:
    if best is None:
        return True
    return value < best if metric in ("loss", "perplexity") else value > best


def improves(metric: str, metrics: dict[str, Any], best: Optional[dict[str, Any]]) -> bool:
    """Whether an evaluation beats the best so far on `metric`; a tie (common for F1 or accuracy on small
    validation sets, and for 0.0 early in NER) goes to the lower validation loss, so the model kept is the one
    that has learned more, not the earlier one."""
    if best is None:
        return True
    value, best_value = metrics[metric], best[metric]
    if value == best_value and metric != "loss" and metrics.get("loss") is not None and best.get("loss") is not None:
        return metrics["loss"] < best["loss"]
    return is_better(metric, value, best_value)


def summary(metrics: dict[str, Any]) -> str:
    parts = [f"accuracy {metrics['accuracy']:.4f}", f"macro_f1 {metrics['macro_f1']:.4f}"]
    if "loss" in metrics:
        parts.append(f"loss {metrics['loss']:.4f}")
    return ", ".join(parts) + f" on {metrics['examples']} examples"
