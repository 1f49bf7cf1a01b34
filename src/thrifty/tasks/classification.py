"""Sequence classification: one label per text (sentiment, intent, topic, spam).

Data: CSV/TSV/JSONL/Parquet tables or `label text` lines (data/prepare.py cleans, de-duplicates, splits and
reports). Model: an Auto...ForSequenceClassification head. Loss: cross-entropy. Metrics: accuracy (primary),
macro/micro/weighted F1, per-class precision/recall/F1 and the confusion matrix. Speed-ups: the frozen-layer
cache, the last layer computed for the first token only, and token ids cached on disk.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from thrifty.data.batching import collate
from thrifty.data.prepare import PreparedData, Split, prepare_data
from thrifty.data.tokenize import encode, token_lengths
from thrifty.evaluation.evaluate import evaluate_split
from thrifty.evaluation.metrics import summary
from thrifty.evaluation.plots import plot_confusion_matrix
from thrifty.tasks.base import Encoded, TaskDefaults
from thrifty.traits import TASKS, strategy_traits


class SequenceClassification(TaskDefaults):
    traits = TASKS["classification"]
    head = "sequence"
    peft_task_type = "SEQ_CLS"
    caches_frozen_layers = True
    prunes_last_layer = True
    evaluates_full_length = False  # texts are scored as trained: cut at max_length

    @classmethod
    def for_config(cls, config) -> "SequenceClassification":
        """A strategy that trains a sentence encoder on pairs (fewshot) brings its own model and loss: same data,
        metrics and predictions (tasks/fewshot.py)."""
        if strategy_traits(config.strategy.name).trains_pairs:
            from thrifty.tasks.fewshot import FewShotClassification

            return FewShotClassification(config.strategy.fewshot)
        return cls()

    def prepare_data(self, config, seed: int) -> PreparedData:
        return prepare_data(config, seed)

    def attach(self, model) -> None:
        """Its metrics' library loaded with the model: sklearn's import (1 s) would otherwise land in the first
        evaluation, inside the training loop's clock and its budget."""
        importlib.import_module("sklearn.metrics")

    def read_labelled(self, path: str, config, label_names: list[str], role: str = "evaluation"
                      ) -> tuple[Split, dict[str, Any], str]:
        """A labelled table read and cleaned as the training data was (`config`: the model's DataConfig): the texts
        with their label ids in the model's order, the cleaning counts and the file's source name. A label the model
        does not know is refused."""
        from thrifty.data.prepare import clean_table
        from thrifty.data.readers import read_table
        from thrifty.errors import DataError

        table = read_table(path, role=role, fmt="auto", text_column=config.text_column,
                           label_column=config.label_column, encoding_errors=config.encoding_errors,
                           delimiter=config.delimiter)
        texts, names, counts = clean_table(table, config)
        if table.delimiter is not None:  # evaluate's metrics.json says which delimiter split the columns
            counts["delimiter"] = table.delimiter_text()
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({n for n in names if n not in index})
        if unknown:
            raise DataError(f"{path} has labels the model was not trained on: {unknown[:5]}; the model knows: "
                            f"{label_names[:10]}")
        return Split(texts, [index[n] for n in names]), counts, table.source

    def token_lengths(self, tokenizer, split: Split, tokens) -> np.ndarray:
        return tokens.lengths(split.texts, token_lengths)

    def encode(self, tokenizer, split: Split, max_length: int, tokens) -> Encoded:
        return Encoded(tokens.encode(split.texts, max_length, encode), list(split.labels))

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(encoded.input_ids, indices, pad_id, encoded.targets)

    def fit_loss(self, train: Encoded, batch_size: int) -> None:
        """One target per text: every batch's mean already weights each example the same."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels)

    def evaluate(self, model, encoded: Encoded, split: Split, label_names: list[str], pad_id: int, batch_size: int,
                 device, autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        return evaluate_split(model, encoded.input_ids, encoded.targets, label_names, pad_id, batch_size, device,
                              autocast_dtype, forward)

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary(metrics)

    def history_keys(self) -> tuple[str, ...]:
        return self.traits.metrics

    def baseline(self, split: Split, label_names: list[str]) -> float:
        return float(max(np.bincount(np.asarray(split.labels))) / max(1, len(split.labels)))

    def plots(self, metrics: dict[str, Any], label_names: list[str], path, title: str) -> None:
        plot_confusion_matrix(metrics["confusion_matrix"], label_names, path, title)
