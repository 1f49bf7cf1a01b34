"""Few-shot classification (`strategy: fewshot`): a sentence encoder taught by pairs, a head fitted on embeddings.

SetFit's recipe, inside thrifty's one loop. What differs, and why:

- Pairs are never listed. Each step's batch holds a few classes with several examples each; every pair in the
  batch is a training pair (same class: cosine similarity pulled to 1; different: to 0). A batch of B texts gives
  B(B-1)/2 pairs for B forward passes, where SetFit encodes two texts per pair, and memory does not grow with the
  square of the data (SetFit's list of pairs runs out of memory at tens of thousands of examples).
- Batches draw classes in a shuffled cycle, so every class is seen equally often whatever its size (imbalanced
  data, and 77 Banking77 intents at 8 examples each, still give every step positive and negative pairs).
- Label anchors: each label's description (its name, or `strategy.fewshot.label_descriptions`) is one more
  example of its class, in the pairs and in the head's fit: the encoder already knows what "negative" means.
- The head is a logistic regression on the unit-length embeddings, fitted before each evaluation (seconds), so
  validation, `keep the best`, checkpoints and the saved model all carry a head that matches the encoder.
- Self-training, when the user has unlabelled in-domain texts (`data.unlabelled`): the head, once fitted, labels
  them; the texts it is surest of, the same number per class, join a second fit. A few examples per class leave
  the decision boundary underdetermined; many confidently placed neighbours pin it down.

- End to end (`strategy.fewshot.end_to_end_epochs: N`): the last N epochs train the encoder and the head together
  on cross-entropy, starting from the fitted head (SetFit's differentiable head, in the same loop). Automatic by
  default: half of the epochs once the training set has END_TO_END_MIN_ROWS rows. With thousands of labelled rows
  the labels themselves teach more than pairs do (Banking77 at 64 per class, 4,848 rows: pairs only 86.4%, full
  fine-tuning 90.5%, 3 pair epochs then 3 end to end 90.9%, seed 0), and with a few hundred pairs alone are ahead
  (TREC-6 dev at 64 per class, 384 rows: end to end 0.6-1.0 points below; docs/fewshot.md).

The loss is averaged separately over positive and negative pairs, so a batch of many classes (mostly negative
pairs) does not drown its few positives.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from typing import Any, Optional, Sequence

import numpy as np
import torch

from thrifty.console import passes
from thrifty.config import DataConfig, FewShotConfig
from thrifty.data.batching import collate, epoch_generator
from thrifty.data.prepare import PreparedData, Split
from thrifty.errors import ConfigError, DataError
from thrifty.tasks.base import Encoded
from thrifty.tasks.classification import SequenceClassification

MIN_EXAMPLES_PER_CLASS = 2  # a class needs one positive pair
MIN_STEPS = 6  # a few examples make one or two batches an epoch: enough steps to learn from the pairs
END_TO_END_MIN_ROWS = 2_000  # automatic end-to-end epochs from here: measured ahead at 4,848 rows, behind at 384;
#                              every cell at or below 616 rows was won by pairs only (docs/fewshot.md)


def automatic_end_to_end_epochs(train_rows: int, epochs: int) -> int:
    """`end_to_end_epochs: null`: the second half of the epochs once there are END_TO_END_MIN_ROWS training rows."""
    return epochs // 2 if train_rows >= END_TO_END_MIN_ROWS else 0


def recommended_epochs(num_classes: int, steps_per_epoch: int) -> int:
    """The schedule `recommend` proposes and the SetFit comparison runs: 3 epochs for two classes, 6 for more, and at
    least MIN_STEPS steps. Chosen on dev splits, seeds 0-2 (benchmarks/fewshot_vs_setfit.py): two classes overfit
    sooner (SST-2 dev at 64 per class: 3 epochs 77.7%, 6 epochs 75.6%), more classes have more pairs of classes to
    tell apart (Emotion val at 8 per class: 50.0% -> 52.4%; TREC-6 at 64 per class, a dev split of its train file:
    88.5% -> 89.7%, and 89.4% at 10 epochs)."""
    return max(3 if num_classes <= 2 else 6, math.ceil(MIN_STEPS / max(1, steps_per_epoch)))


def label_descriptions(label_names: list[str], config: FewShotConfig) -> dict[int, str]:
    """Label id -> the text that describes it. Given descriptions win; otherwise a label name that is a word or
    phrase ("sports", "card_arrival" -> "card arrival") describes itself, and a code ("0", "1", "B-3") does not."""
    given = dict(config.label_descriptions or {})
    unknown = [k for k in given if k not in label_names]
    if unknown:
        raise ConfigError(f"strategy.fewshot.label_descriptions names labels the data does not have: {unknown[:5]}; "
                          f"the labels are: {', '.join(label_names[:20])}")
    out = {}
    for i, name in enumerate(label_names):
        text = given.get(name)
        if text is None:
            words = re.sub(r"[_\-]+", " ", name).strip()
            text = words if re.search(r"[A-Za-z]{2,}", words) else None
        if text:
            out[i] = text
    return out


def class_balanced_batches(labels: Sequence[int], batch_size: int, classes_per_batch: int, seed: int,
                           epoch: int) -> list[list[int]]:
    """One epoch: ceil(n / batch_size) batches, each of `classes_per_batch` classes x (batch_size / classes)
    examples. Classes come from a shuffled cycle (every class equally often), examples from a shuffled cycle
    within their class. Depends only on (seed, epoch): a resumed run sees the same batches."""
    g = epoch_generator(seed, epoch)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    classes = sorted(by_class)
    k = min(len(classes), classes_per_batch)
    per_class = max(MIN_EXAMPLES_PER_CLASS, batch_size // k)
    order = {c: [by_class[c][j] for j in torch.randperm(len(by_class[c]), generator=g).tolist()] for c in classes}
    position = dict.fromkeys(classes, 0)
    cycle: list[int] = []
    batches = []
    for _ in range(math.ceil(len(labels) / batch_size)):
        chosen: list[int] = []
        while len(chosen) < k:
            if not cycle:
                cycle = [classes[j] for j in torch.randperm(len(classes), generator=g).tolist()]
            c = cycle.pop()
            if c not in chosen:
                chosen.append(c)
        batch = []
        for c in chosen:
            rows = order[c]
            take = min(per_class, len(rows))
            batch.extend(rows[(position[c] + j) % len(rows)] for j in range(take))
            position[c] = (position[c] + take) % len(rows)
        batches.append(batch)
    return batches


def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's cosine-similarity loss over every pair of the batch: (cos - same_class)^2, averaged over the positive
    and the negative pairs separately, then the two averages."""
    similarity = embeddings @ embeddings.T
    same = (labels[:, None] == labels[None, :]).float()
    upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
    squared = (similarity - same) ** 2
    parts = [squared[upper & (same == s)] for s in (1.0, 0.0)]
    parts = [p.mean() for p in parts if p.numel()]
    return torch.stack(parts).mean()


class FewShotClassification(SequenceClassification):
    """Classification with `strategy: fewshot`: the same data, metrics and predictions, another model and loss."""

    head = "sentence"
    caches_frozen_layers = False  # every layer trains
    prunes_last_layer = False  # mean pooling reads every position
    embeds_train_before_evaluation = True  # the head's fit

    def __init__(self, config: Optional[FewShotConfig] = None):
        importlib.import_module("sklearn.linear_model")  # the head's fit: loaded with the task, not in the loop

        self.config = config or FewShotConfig()
        self.anchors: dict[int, str] = {}  # label id -> description, set by prepare_data
        self.unlabelled: list[str] = []  # data.unlabelled's texts, for self-training; set by prepare_data
        self.pseudo_labels_per_class = 0
        self._train_split: Optional[Split] = None  # encode() adds the unlabelled texts to this split's encoding
        self.end_to_end = False  # set as each epoch starts: the last end_to_end_epochs train on cross-entropy
        self.train_rows = 0  # labelled training rows (set by prepare_data): the automatic end-to-end epochs' rule

    def prepare_data(self, config, seed: int) -> PreparedData:
        data = super().prepare_data(config, seed)
        counts = np.bincount(np.asarray(data.train.labels), minlength=len(data.label_names))
        short = [(int(counts[i]), name) for i, name in enumerate(data.label_names) if counts[i] < MIN_EXAMPLES_PER_CLASS]
        if short:
            have, name = short[0]
            raise DataError(f"strategy fewshot needs at least {MIN_EXAMPLES_PER_CLASS} training examples per class and "
                            f"class '{name}' has {have}" + (f" ({len(short)} classes are short)" if len(short) > 1 else "")
                            + "; add examples of it or drop it from the data")
        self.anchors = label_descriptions(data.label_names, self.config) if self.config.label_anchors else {}
        data.report["fewshot"] = {"label_anchors": {data.label_names[i]: t for i, t in self.anchors.items()},
                                  "classes": len(data.label_names)}
        self._train_split = data.train
        self.train_rows = len(data.train.labels)
        given = self.config.end_to_end_epochs
        data.report["fewshot"]["end_to_end_epochs"] = given if given is not None else (
            f"automatic: half of train.epochs ({self.train_rows:,} training rows >= {END_TO_END_MIN_ROWS:,})"
            if self.train_rows >= END_TO_END_MIN_ROWS else
            f"automatic: 0, pairs only ({self.train_rows:,} training rows < {END_TO_END_MIN_ROWS:,})")
        if config.unlabelled is not None:
            self.unlabelled, read = unlabelled_texts(config, data, seed, self.config.max_unlabelled)
            # Automatic: 4x the median class's labelled examples (the count hardly mattered on SST-2 dev;
            # docs/fewshot.md)
            self.pseudo_labels_per_class = self.config.pseudo_labels_per_class or 4 * int(np.median(counts))
            data.report["fewshot"]["self_training"] = {"unlabelled": read,
                                                       "pseudo_labels_per_class": self.pseudo_labels_per_class}
        return data

    def encode(self, tokenizer, split: Split, max_length: int, tokens) -> Encoded:
        encoded = super().encode(tokenizer, split, max_length, tokens)
        if self.anchors:  # a handful of texts: tokenised directly
            ids = tokenizer(list(self.anchors.values()), truncation=True, max_length=max_length)["input_ids"]
            encoded.extra["anchors"] = {label: list(row) for label, row in zip(self.anchors, ids)}
        if self.unlabelled and split is self._train_split:  # through the token cache, like the labelled texts
            encoded.extra["unlabelled"] = super().encode(tokenizer, Split(self.unlabelled, []), max_length, tokens).input_ids
        return encoded

    def classes_per_batch(self, num_classes: int, batch_size: int) -> int:
        if self.config.classes_per_batch:
            return self.config.classes_per_batch
        return num_classes if num_classes * MIN_EXAMPLES_PER_CLASS <= batch_size else max(2, batch_size // 2)

    def training_batches(self, train: Encoded, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
        k = self.classes_per_batch(len(set(train.targets)), batch_size)
        return class_balanced_batches(train.targets, batch_size, k, seed, epoch)

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """The batch, plus (in training) the anchors of the classes it holds, as more rows of their class."""
        anchors = encoded.extra.get("anchors", {})
        labels = [encoded.targets[i] for i in indices]
        extra = [label for label in dict.fromkeys(labels) if label in anchors]
        if not extra:
            return collate(encoded.input_ids, indices, pad_id, encoded.targets)
        rows = [encoded.input_ids[i] for i in indices] + [anchors[label] for label in extra]
        return collate(rows, range(len(rows)), pad_id, labels + extra)

    def loss_inputs(self, output) -> Any:
        return output  # the pair loss reads the embeddings, not the logits

    def start_epoch(self, model, epoch: int, epochs: int, resumed: bool, train: Encoded, pad_id: int, batch_size: int,
                    device) -> None:
        """The last `end_to_end_epochs` epochs train encoder and head together; the first of them starts from the
        fitted head (not from zeros, which would send the encoder random gradients). A run resumed inside those
        epochs has its trained head in the checkpoint: no refit. A budget plan that cut train.epochs keeps one epoch
        of pairs at least."""
        wanted = self.end_to_end_epochs(epochs)
        first = max(1, epochs - wanted)
        self.end_to_end = wanted > 0 and epoch >= first
        if self.end_to_end and epoch == first and not resumed:
            fit_head(model, train, pad_id, batch_size, device, self.pseudo_labels_per_class)

    def end_to_end_epochs(self, epochs: int) -> int:
        given = self.config.end_to_end_epochs
        return given if given is not None else automatic_end_to_end_epochs(self.train_rows, epochs)

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        if self.end_to_end:
            return torch.nn.functional.cross_entropy(output.logits, labels)
        return pair_loss(output.embeddings, labels)

    def before_evaluation(self, model, train: Encoded, pad_id: int, batch_size: int, device) -> None:
        """Fit the head (a logistic regression, as SetFit's) on the embeddings of the training texts and the anchors;
        in the end-to-end epochs the head is trained, not refitted."""
        if not self.end_to_end:
            fit_head(model, train, pad_id, batch_size, device, self.pseudo_labels_per_class)


def unlabelled_texts(config: DataConfig, data: PreparedData, seed: int, limit: int) -> tuple[list[str], dict[str, Any]]:
    """data.unlabelled's cleaned texts, without those that are labelled texts of any split (a validation or test
    text would leak into the head's fit), sampled (seeded) down to `limit`; and what was read, dropped and kept."""
    from thrifty.tasks.language_modeling import load_documents

    report: dict[str, Any] = {"files": {}, "splits": {}}
    # One text per line, or a table's text column; with data.format label_text, 'label text' lines whose labels
    # are dropped (SST-2's own training file as the pool)
    plain = config.format if config.format == "label_text" else "auto"
    texts = load_documents(config.unlabelled, dataclasses.replace(config, format=plain), "unlabelled", report)
    counts = {"source": report["files"]["unlabelled"], **report["splits"]["unlabelled"]}
    labelled = set(data.train.texts)
    held_out = set(data.validation.texts) | set(data.test.texts if data.test is not None else [])
    kept = [t for t in texts if t not in labelled and t not in held_out]
    counts["dropped_labelled_in_train"] = sum(t in labelled for t in texts)
    counts["dropped_in_validation_or_test"] = sum(t in held_out and t not in labelled for t in texts)
    if not kept:
        raise DataError(f"{report['files']['unlabelled']}: every text is also a labelled text of the data; give "
                        "data.unlabelled texts that are not in train, validation or test")
    if len(kept) > limit:
        picked = sorted(np.random.default_rng(seed).permutation(len(kept))[:limit])
        kept = [kept[i] for i in picked]
        counts["sampled_to"] = limit
    counts["used"] = len(kept)
    return kept, counts


def embed(model, input_ids: list, pad_id: int, batch_size: int, device) -> np.ndarray:
    from thrifty.data.batching import sorted_batches

    was_training = model.training
    model.eval()
    out = np.zeros((len(input_ids), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), passes("embed", len(input_ids), "text") as shown:
        for idx in sorted_batches([len(x) for x in input_ids], batch_size):
            batch = {k: v.to(device) for k, v in collate(input_ids, idx, pad_id).items()}
            out[idx] = model.embed(**batch).float().cpu().numpy()
            shown.update(len(idx))
    model.train(was_training)
    return out


def most_confident(probabilities: np.ndarray, classes: np.ndarray, per_class: int) -> tuple[np.ndarray, list[int]]:
    """Rows of `probabilities` and their predicted classes: per class, the `per_class` rows predicted as that
    class with the highest probability (fewer where fewer are predicted as it)."""
    predicted = probabilities.argmax(axis=1)
    rows, labels = [], []
    for column, label in enumerate(classes):
        candidates = np.flatnonzero(predicted == column)
        best = candidates[np.argsort(-probabilities[candidates, column], kind="stable")[:per_class]]
        rows.extend(best.tolist())
        labels.extend([int(label)] * len(best))
    return np.asarray(rows, dtype=np.int64), labels


def fit_head(model, train: Encoded, pad_id: int, batch_size: int, device, pseudo_labels_per_class: int = 0) -> None:
    """The head's weights from a logistic regression on the embeddings (balanced class weights: imbalanced data).
    With unlabelled texts in `train.extra` (self-training): a second fit that adds, per class, the
    `pseudo_labels_per_class` unlabelled texts the first fit is surest of, with the label it gives them."""
    from sklearn.linear_model import LogisticRegression

    anchors = train.extra.get("anchors", {})
    ids = list(train.input_ids) + list(anchors.values())
    labels = list(train.targets) + list(anchors)
    features = embed(model, ids, pad_id, batch_size, device)
    classifier = LogisticRegression(max_iter=1000, class_weight="balanced").fit(features, labels)
    unlabelled = train.extra.get("unlabelled")
    if unlabelled and pseudo_labels_per_class:
        pool = embed(model, unlabelled, pad_id, batch_size, device)
        rows, pseudo = most_confident(classifier.predict_proba(pool), classifier.classes_, pseudo_labels_per_class)
        classifier = LogisticRegression(max_iter=1000, class_weight="balanced").fit(
            np.concatenate([features, pool[rows]]), labels + pseudo)
    weight = np.zeros((model.head.out_features, features.shape[1]), dtype=np.float32)
    bias = np.full(model.head.out_features, -1e4, dtype=np.float32)  # a class absent from training is never predicted
    if len(classifier.classes_) == 2:  # sklearn keeps one row for two classes: scores -z/2, +z/2 give its softmax
        rows = [-classifier.coef_[0] / 2, classifier.coef_[0] / 2]
        biases = [-classifier.intercept_[0] / 2, classifier.intercept_[0] / 2]
    else:
        rows, biases = list(classifier.coef_), list(classifier.intercept_)
    for c, row, b in zip(classifier.classes_, rows, biases):
        weight[int(c)], bias[int(c)] = row, b
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
