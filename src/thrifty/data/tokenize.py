"""Tokenisation with the model's fast tokenizer: length statistics, an automatic max_length, no padding.

Texts are tokenised once into unpadded id lists; padding happens per batch in ``batching.collate``, so a
batch of short sentences never pays for the longest text in the data set.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

FALLBACK_MODEL_LIMIT = 512
_UNBOUNDED = 1_000_000  # tokenizers without a limit report a huge sentinel for model_max_length


def model_length_limit(tokenizer, model_config=None) -> int:
    """The longest input the model accepts: the tokenizer's limit and the position table, whichever is smaller."""
    limits = []
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit < _UNBOUNDED:
        limits.append(int(limit))
    positions = getattr(model_config, "max_position_embeddings", None) if model_config is not None else None
    if positions:
        limits.append(int(positions))
    return min(limits) if limits else FALLBACK_MODEL_LIMIT


def token_lengths(tokenizer, texts: list[str]) -> np.ndarray:
    """Lengths with special tokens and without truncation (the real length of each text)."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(texts, add_special_tokens=True, truncation=False, return_attention_mask=False)
    return np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))


def choose_max_length(lengths: np.ndarray, percentile: float, limit: int) -> int:
    """The smallest multiple of 8 covering `percentile` % of texts, capped by the model's limit."""
    if len(lengths) == 0:
        return min(limit, 128)
    target = float(np.percentile(lengths, percentile))
    return int(min(limit, max(8, math.ceil(target / 8) * 8)))


def length_stats(lengths: np.ndarray, max_length: int) -> dict[str, Any]:
    if len(lengths) == 0:
        return {"count": 0}
    truncated = int(np.sum(lengths > max_length))
    return {
        "count": int(len(lengths)),
        "mean": round(float(np.mean(lengths)), 1),
        "p50": int(np.percentile(lengths, 50)),
        "p95": int(np.percentile(lengths, 95)),
        "p99": int(np.percentile(lengths, 99)),
        "max": int(np.max(lengths)),
        "max_length": int(max_length),
        "truncated": truncated,
        "truncated_fraction": round(truncated / len(lengths), 4),
    }


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Unpadded input ids, truncated to max_length (special tokens kept)."""
    if not texts:
        return []
    out = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length, return_attention_mask=False)
    return [list(ids) for ids in out["input_ids"]]


def resolve_max_length(tokenizer, model_config, train_texts: list[str], configured: Optional[int], percentile: float,
                       lengths: Optional[np.ndarray] = None):
    """Returns (max_length, train length stats, how it was chosen); `lengths` if already known."""
    limit = model_length_limit(tokenizer, model_config)
    lengths = token_lengths(tokenizer, train_texts) if lengths is None else lengths
    if configured is not None:
        chosen, how = min(configured, limit), "configured" + (f" (capped at the model limit {limit})" if configured > limit else "")
    else:
        chosen = choose_max_length(lengths, percentile, limit)
        how = f"auto: p{percentile:g} of training lengths, model limit {limit}"
    return chosen, length_stats(lengths, chosen), how
