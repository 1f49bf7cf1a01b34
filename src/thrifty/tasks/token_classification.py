"""Token classification (NER): one BIO tag per word, entities scored with seqeval.

Data: CoNLL files or JSONL (data/tagged.py), BIO checked and repaired with a count. Each word's tag goes on
its first sub-token; the other sub-tokens and the special tokens are ignored by the loss (-100), as in the
Hugging Face recipe. Words that the tokenizer turns into no token, and words cut off by max_length, are
counted in the data report and evaluated as predicted ``O`` (never silently dropped from the score).
Metrics: entity-level micro precision, recall and F1 (``f1`` is primary) and per entity type, by seqeval
in its default (conlleval) mode. Predictions: entities with type, text, character start/end and a score
(the mean probability of the entity's word tags).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from thrifty.console import passes
from thrifty.data.batching import sorted_batches
from thrifty.data.tagged import TaggedData, TaggedSplit, prepare_tagged
from thrifty.evaluation.plots import plot_per_type_f1
from thrifty.evaluation.sharding import gathered, my_share, summed
from thrifty.tasks.base import Encoded, TaskDefaults
from thrifty.traits import TASKS

IGNORE = -100  # the label of positions the loss skips: special tokens and non-first sub-tokens


class TokenClassification(TaskDefaults):
    traits = TASKS["token_classification"]
    head = "token"
    peft_task_type = "TOKEN_CLS"
    caches_frozen_layers = True  # the frozen bottom is per position anyway
    prunes_last_layer = False  # every position is read
    # Validation and test are tokenised up to the model's limit, not the training max_length: a word cut off is
    # a word scored as O, and evaluation pads per sorted batch, so long sentences cost only themselves.
    evaluates_full_length = True

    def attach(self, model) -> None:
        """Its metrics' library loaded with the model: seqeval's import (1 s) would otherwise land in the first
        evaluation, inside the training loop's clock and its budget."""
        importlib.import_module("seqeval.metrics")

    def read_labelled(self, path: str, config, label_names: list[str], role: str = "evaluation"
                      ) -> tuple[TaggedSplit, dict[str, Any], str]:
        """A tagged file (CoNLL columns or JSONL tokens + tags) read as the training data was, its BIO repaired:
        the words with their tag ids in the model's order, the counts and the file's path. A tag the model does not
        know is refused."""
        from pathlib import Path

        from thrifty.data.tagged import normalise_word, read_tagged, repair_bio
        from thrifty.errors import DataError

        words, tags, counts = read_tagged(path, role, config)
        repaired = [repair_bio(t) for t in tags]
        counts["tags_repaired_i_to_b"] = sum(n for _, n in repaired)
        index = {name: i for i, name in enumerate(label_names)}
        unknown = sorted({t for s, _ in repaired for t in s if t not in index})
        if unknown:
            raise DataError(f"{path} has tags the model was not trained on: {unknown[:5]}; the model knows: {label_names}")
        split = TaggedSplit([[normalise_word(w, config) for w in s] for s in words], [[index[t] for t in s] for s, _ in repaired])
        return split, counts, str(Path(path).expanduser())

    def prepare_data(self, config, seed: int) -> TaggedData:
        return prepare_tagged(config, seed)

    def token_lengths(self, tokenizer, split: TaggedSplit, tokens) -> np.ndarray:
        if not split.words:
            return np.zeros(0, dtype=np.int64)
        out = tokenizer(split.words, is_split_into_words=True, truncation=False, return_attention_mask=False)
        return np.fromiter((len(ids) for ids in out["input_ids"]), dtype=np.int64, count=len(split))

    def encode(self, tokenizer, split: TaggedSplit, max_length: int, tokens) -> Encoded:
        """First sub-token of each word carries its tag. Counts words with no token and words cut by max_length."""
        if not split.words:
            return Encoded([], [], {"word_index": [], "words_without_tokens": 0, "words_truncated": 0})
        out = tokenizer(split.words, is_split_into_words=True, truncation=True, max_length=max_length,
                        return_attention_mask=False)
        ids, targets, word_index = [], [], []
        no_tokens = truncated = 0
        for i, words in enumerate(split.words):
            word_ids = out.word_ids(i)
            labels, firsts = align_first_subtokens(word_ids, split.tags[i])
            seen = set(firsts)
            last = max(seen) if seen else -1
            cut = len(word_ids) >= max_length
            for w in range(len(words)):
                if w not in seen:
                    if cut and w > last:
                        truncated += 1
                    else:
                        no_tokens += 1
            ids.append(list(out["input_ids"][i]))
            targets.append(labels)
            word_index.append(firsts)
        return Encoded(ids, targets, {"word_index": word_index, "words_without_tokens": no_tokens,
                                      "words_truncated": truncated})

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        width = max(len(encoded.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
        for row, i in enumerate(indices):
            n = len(encoded.input_ids[i])
            ids[row, :n] = torch.as_tensor(encoded.input_ids[i], dtype=torch.long)
            mask[row, :n] = 1
            labels[row, :n] = torch.as_tensor(encoded.targets[i], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def __init__(self) -> None:
        self.scored_tokens_per_batch: Optional[float] = None  # set by fit_loss from the training split

    def fit_loss(self, train: Encoded, batch_size: int) -> None:
        """Length-grouped batches make a per-batch mean unfair to tokens: a batch of 32 five-word headlines and a
        batch of 32 forty-word sentences would weigh the same, so each headline word would count eight times as
        much as a word of a long sentence (CoNLL-2003 has many of both). Dividing each batch's summed loss by
        the mean number of scored tokens per batch over the whole split weighs every token the same, as random
        batches do on average, and keeps the gradient on the usual per-token scale."""
        scored = sum(sum(t != IGNORE for t in targets) for targets in train.targets)
        self.scored_tokens_per_batch = max(1.0, scored / max(1, len(train)) * batch_size)

    @property
    def loss_sums(self) -> bool:
        """The loss is a sum over the batch's tokens divided by a constant (not a mean over its examples): a share of
        a batch in a multi-process run weighs N times, whatever its size."""
        return self.scored_tokens_per_batch is not None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat_logits, flat_labels = logits.float().flatten(0, 1), labels.flatten()
        if self.scored_tokens_per_batch is None:
            return torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE)
        total = torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum")
        return total / self.scored_tokens_per_batch

    def word_probabilities(self, model, encoded: Encoded, pad_id: int, batch_size: int, device, autocast_dtype=None,
                           forward: Optional[Callable] = None) -> tuple[list[np.ndarray], float, int]:
        """Per example, the tag probabilities of each word that has a first sub-token [words, tags], and the summed
        loss and its count. Prediction input has no tags: its targets mark first sub-tokens with any label id."""
        was_training = model.training
        model.eval()
        out: list[Optional[np.ndarray]] = [None] * len(encoded)
        loss_sum, count = 0.0, 0
        with torch.inference_mode(), passes("tag", len(encoded), "text") as shown:
            for idx in my_share(sorted_batches(encoded.lengths, batch_size)):  # a multi-process evaluation: a share
                batch = self.collate(encoded, idx, pad_id)
                labels = batch.pop("labels")
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = forward(batch, idx) if forward is not None else model(**batch).logits
                logits = logits.float().cpu()
                keep = labels != IGNORE
                if keep.any():
                    loss_sum += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
                    count += int(keep.sum())
                probs = torch.softmax(logits, dim=-1)
                for row, i in enumerate(idx):
                    out[i] = probs[row][keep[row]].numpy()  # the first sub-token of each word, in word order
                shown.update(len(idx))
        if was_training:
            model.train()
        return gathered(out), summed(loss_sum), summed(count)  # type: ignore[return-value]

    def evaluate(self, model, encoded: Encoded, split: TaggedSplit, label_names: list[str], pad_id: int,
                 batch_size: int, device, autocast_dtype=None, forward: Optional[Callable] = None) -> dict[str, Any]:
        probs, loss_sum, count = self.word_probabilities(model, encoded, pad_id, batch_size, device, autocast_dtype,
                                                         forward)
        gold, predicted = [], []
        for i, tags in enumerate(split.tags):
            words = ["O"] * len(tags)  # a word without a token (or cut off) is predicted O: it still counts
            for w, row in zip(encoded.extra["word_index"][i], probs[i]):
                words[w] = label_names[int(row.argmax())]
            gold.append([label_names[t] for t in tags])
            predicted.append(words)
        metrics = entity_metrics(gold, predicted)
        metrics["loss"] = loss_sum / max(1, count)
        metrics["words_without_tokens"] = encoded.extra["words_without_tokens"]
        metrics["words_truncated"] = encoded.extra["words_truncated"]
        metrics["labels"] = list(label_names)
        return metrics

    def summary(self, metrics: dict[str, Any]) -> str:
        parts = [f"f1 {metrics['f1']:.4f}", f"precision {metrics['precision']:.4f}", f"recall {metrics['recall']:.4f}"]
        if "loss" in metrics:
            parts.append(f"loss {metrics['loss']:.4f}")
        return ", ".join(parts) + f" on {metrics['examples']} sentences"

    def history_keys(self) -> tuple[str, ...]:
        return ("f1", "precision", "recall", "loss")

    def baseline(self, split: TaggedSplit, label_names: list[str]) -> float:
        return 0.0  # tagging every word O finds no entity: F1 0

    def plots(self, metrics: dict[str, Any], label_names: list[str], path, title: str) -> None:
        plot_per_type_f1(metrics["per_type"], path, title)


def align_first_subtokens(word_ids: list, tags: Optional[Sequence[int]] = None) -> tuple[list[int], list[int]]:
    """Per token position, the tag of the word it starts (or IGNORE for special tokens and later sub-tokens), and
    the word ids in the order their first sub-tokens appear. Without `tags`, first sub-tokens get label 0: it only
    marks them (prediction input has no tags)."""
    labels, firsts, previous = [], [], None
    for w in word_ids:
        if w is None or w == previous:
            labels.append(IGNORE)
        else:
            labels.append(tags[w] if tags is not None else 0)
            firsts.append(w)
        if w is not None:
            previous = w
    return labels, firsts


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 and per type, as seqeval (conlleval mode) counts them."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                       "support": int(v["support"])}
                for name, v in report.items() if not name.endswith(" avg")}
    words = sum(len(s) for s in gold)
    correct = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    return {"examples": len(gold), "f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
            "recall": float(micro["recall"]), "entities": int(micro["support"]),
            "word_accuracy": correct / max(1, words), "per_type": per_type}


def group_entities(tags: list[str], scores: list[float]) -> list[tuple[str, int, int, float]]:
    """BIO tags of words -> (type, first word, last word, mean score) per entity."""
    entities, current = [], None
    for w, (tag, score) in enumerate(zip(tags, scores)):
        kind = tag[2:]
        if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[0] != kind)):
            if current:
                entities.append(current)
            current = [kind, w, w, [score]]
        elif tag.startswith("I-"):
            current[2] = w
            current[3].append(score)
        else:
            if current:
                entities.append(current)
            current = None
    if current:
        entities.append(current)
    return [(k, a, b, float(np.mean(s))) for k, a, b, s in entities]
