"""Do a model's bf16 weights give the labels its fp32 weights give? Measured on its validation split when training
ends, on hardware with bf16, and recorded in the model folder's manifest: predict, evaluate and serve then choose
bf16 by default only for a model that agreed on at least 99.5% of those labels (models/precision.prediction_backend).

The check loads the saved folder twice, as `--backend torch` and `--backend torch-bf16` load it, so it measures the
exact prediction path (pruned last layer, sorted passes, lanes) that will serve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from thrifty.inference.predictor import Predictor, prediction_device
from thrifty.models.precision import AGREEMENT_FLOOR, AGREEMENT_KEY, bf16_hardware, cpu_name
from thrifty.runs.manifest import read_manifest, write_manifest
from thrifty.traits import task_traits

MAX_EXAMPLES = 2000  # validation examples compared at most: enough to resolve 0.5% (10 labels of 2,000), and a few
#                      seconds on 2 cores for a small encoder


def bf16_agreement(folder: Path, split) -> Optional[dict[str, Any]]:
    """The share of labels bf16 weights give as fp32 weights do on `split` (its first MAX_EXAMPLES examples): per
    text, or for NER per word that either tags as part of an entity; with what was compared and where. None where
    there is nothing to measure (no bf16 hardware, a model that writes text, an empty split, no entity tagged)."""
    hardware = bf16_hardware(prediction_device())
    manifest = read_manifest(folder)
    if hardware is None or not task_traits(manifest["task"]).agrees_by_label or len(split) == 0:
        return None
    sample = _head(split, MAX_EXAMPLES)
    labels = []
    for backend in ("torch", "torch-bf16"):  # one at a time: the first is let go before the second loads
        predictor = Predictor.load(folder, backend=backend, lanes=None)
        try:
            labels.append(predictor.label_ids(sample))
        finally:
            predictor.close()
            del predictor
    fp32, bf16 = labels
    if task_traits(manifest["task"]).tags_words and "O" in manifest["labels"]:
        # most words are outside every entity and stay so in both: counted, they would hide a disagreement on the
        # entities themselves, so only words that either side tags as part of an entity count
        outside = manifest["labels"].index("O")
        tagged = (fp32 != outside) | (bf16 != outside)
        fp32, bf16 = fp32[tagged], bf16[tagged]
    if len(fp32) == 0:
        return None
    return {"label_agreement": round(float(np.mean(fp32 == bf16)), 5), "labels": int(len(fp32)),
            "examples": len(sample), "split": "validation", "floor": AGREEMENT_FLOOR, "hardware": hardware,
            "cpu": cpu_name()}


def record_bf16_agreement(folder: Path, split) -> Optional[dict[str, Any]]:
    """bf16_agreement, written into the folder's manifest (where prediction_backend reads it)."""
    record = bf16_agreement(folder, split)
    if record is not None:
        manifest = read_manifest(folder)
        manifest[AGREEMENT_KEY] = record
        write_manifest(folder, manifest)
    return record


def _head(split, n: int):
    """The first `n` examples of a split, of the same kind (texts and labels, or words and tags)."""
    import dataclasses

    if len(split) <= n:
        return split
    return dataclasses.replace(split, **{f.name: getattr(split, f.name)[:n] for f in dataclasses.fields(split)})
