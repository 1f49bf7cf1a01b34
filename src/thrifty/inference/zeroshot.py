"""Zero-shot classification from label names alone: a model folder before any labelled example exists.

Each label's description (its name when the name is words, "card_arrival" -> "card arrival"; or words the user
gives for a code such as "0") is embedded by the sentence encoder, and the head's row for that label is its
embedding: a text gets the label whose description is nearest (cosine). The same anchors `strategy: fewshot`
starts from, so a zero-shot folder is what fewshot would be with no example at all. Measured against 8 labelled
examples per class in docs/fewshot.md (`python benchmarks/fewshot_vs_setfit.py --systems zero-shot`).

The folder is a `sentence_embedding` model folder like a fewshot run's `model/` (encoder, tokenizer,
`sentence_head.safetensors`, `thrifty.json`), so `thrifty predict`, `thrifty evaluate` and `model.name` of a
later run (fewshot on the first labelled examples) take it as they take any model folder.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from thrifty.config import DataConfig, FewShotConfig
from thrifty.errors import ConfigError, RunDirError
from thrifty.models.loading import load_tokenizer, quiet_transformers, resolve_model
from thrifty.models.sentence import SentenceClassifier
from thrifty.runs.manifest import SENTENCE_FORMAT, preprocessing, weights_sha256, write_manifest
from thrifty.runs.run_dir import writing
from thrifty.tasks.fewshot import embed, label_descriptions

# logits = SCALE x cosine. Cosines of one text to the descriptions differ by tenths; 20 (a softmax temperature of
# 0.05, as in contrastive sentence encoders) turns a difference of 0.1 into odds of e^2, about 7 to 1. It changes
# the scores, never the predicted label.
SCALE = 20.0
MAX_LENGTH = 256  # tokens of a text to classify (all-MiniLM-L6-v2 was trained at 256 and so cuts its inputs)


def zeroshot(labels: Sequence[str], output: str | Path, *, descriptions: Optional[dict[str, str]] = None,
             model: str = "all-MiniLM-L6-v2", max_length: int = MAX_LENGTH, overwrite: bool = False,
             trust_remote_code: bool = False) -> Path:
    """Write a zero-shot classifier for `labels` to `output` (a model folder) and return its path.

    `descriptions` maps a label to words that describe it (needed for labels that are codes, e.g. {"0": "negative"});
    `model` is any sentence encoder: a hub id, a local folder, or a thrifty model folder."""
    labels = [str(label).strip() for label in labels]
    if len(labels) < 2 or any(not label for label in labels):
        raise ConfigError(f"zero-shot needs at least 2 non-empty labels, got {labels}; e.g. --labels negative,positive")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"label(s) {repeated} given more than once; give each label once")
    if max_length < 8:
        raise ConfigError(f"--max-length {max_length} is too short to read a text; use at least 8 (default {MAX_LENGTH})")
    unknown = sorted(set(descriptions or {}) - set(labels))
    if unknown:
        raise ConfigError(f"descriptions given for label(s) {unknown[:5]} that are not among the labels {labels[:10]}; "
                          "describe only the labels given")
    described = label_descriptions(labels, FewShotConfig(label_descriptions=descriptions))
    missing = [label for i, label in enumerate(labels) if i not in described]
    if missing:
        raise ConfigError(f"label(s) {missing[:5]} are codes, not words, so nothing describes them; describe each, "
                          f"e.g. --describe {missing[0]}=\"words for this class\"")
    out = Path(output).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"{out} already exists and is not empty; choose another --output or add --overwrite")

    quiet_transformers()
    path = resolve_model(model)
    encoder = SentenceClassifier.from_pretrained(path, labels, trust_remote_code=trust_remote_code)  # refuses decoders
    tokenizer = load_tokenizer(path, trust_remote_code)
    max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    ids = tokenizer([described[i] for i in range(len(labels))], truncation=True, max_length=max_length)["input_ids"]
    anchors = embed(encoder, ids, tokenizer.pad_token_id, 64, torch.device("cpu"))  # unit length, one row per label
    with torch.no_grad():
        encoder.head.weight.copy_(torch.from_numpy(anchors) * SCALE)
        encoder.head.bias.zero_()

    manifest = {
        "task": "classification", "labels": labels, "format": SENTENCE_FORMAT, "pooling": "mean", "normalize": True,
        "strategy": "zeroshot", "label_descriptions": {labels[i]: text for i, text in described.items()},
        "zero_shot_scale": SCALE,
        "preprocessing": preprocessing(DataConfig(), max_length, max_length, "classification"),  # the defaults
        "base_model": {"name": model, "path": path, "weights_sha256": weights_sha256(path)}, "parent": None,
        "data": {"train_file": None, "train_examples": 0, "fingerprint": None}, "metrics": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = out.with_name(out.name + ".tmp")
    with writing(out.parent, "the zero-shot model"):  # written aside, then moved: never half a model folder
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        encoder.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, manifest)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out
