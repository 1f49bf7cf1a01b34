"""Plots people would rather see than read: the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_confusion_matrix(matrix: list[list[int]], label_names: list[str], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix, dtype=float)
    n = len(label_names)
    rows = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)  # colour by recall, so rare classes show
    size = min(30.0, max(4.5, 0.32 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=label_names, rotation=90 if n > 6 else 0, fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), labels=label_names, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                        color="white" if normalised[i, j] > 0.5 else "black", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_type_f1(per_type: dict[str, dict[str, float]], path: str | Path, title: str) -> Path:
    """Token classification: precision, recall and F1 of each entity type, with its support."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(per_type)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 2), 3.8))
    x = np.arange(len(names))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_type[n][key] for n in names], width=0.27, label=key)
    ax.set_xticks(x, labels=[f"{n}\n({per_type[n]['support']})" for n in names])
    ax.set_ylim(0, 1)
    ax.set_ylabel("entity-level score")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
