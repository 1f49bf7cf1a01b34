"""Tokenisation with the model's fast tokenizer: length statistics, an automatic max_length, no padding.

Texts are tokenised once into unpadded id lists; padding happens per batch in ``batching.collate``, so a
batch of short sentences never pays for the longest text in the data set.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

FALLBACK_MODEL_LIMIT = 512
MAX_CUT_SHARE = 0.05  # the automatic max_length cuts at most this share of any split it cuts (validation and test
#                      too, not only the training texts its percentile is taken from); a split still cut more (a
#                      configured max_length, a low length_percentile, the model's limit) is a warning on the console
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


def covering_length(lengths: np.ndarray, share: float = MAX_CUT_SHARE) -> int:
    """The shortest length that leaves at most `share` of `lengths` longer (0 for none)."""
    if len(lengths) == 0:
        return 0
    ordered = np.sort(np.asarray(lengths))
    allowed = int(math.floor(share * len(ordered) + 1e-9))  # texts that may stay longer
    return int(ordered[len(ordered) - 1 - allowed])


def _multiple_of_8(length: int, limit: int) -> int:
    return int(min(limit, max(8, math.ceil(length / 8) * 8)))


def resolve_max_length(tokenizer, model_config, train_texts: list[str], configured: Optional[int], percentile: float,
                       lengths: Optional[np.ndarray] = None, cut_too: Optional[dict[str, np.ndarray]] = None):
    """Returns (max_length, train length stats, how it was chosen); `lengths` if already known. `cut_too`: the
    untruncated lengths of the other splits cut to the same max_length (validation, test): the automatic length is
    raised, up to the model's limit, until it cuts at most MAX_CUT_SHARE of each. The raise costs little: batches are
    padded to their own longest text (sorted by length for evaluation; few-shot training in chunks of similar
    length), so max_length only caps the few long texts, and the texts it keeps whole are scored whole."""
    limit = model_length_limit(tokenizer, model_config)
    lengths = token_lengths(tokenizer, train_texts) if lengths is None else lengths
    if configured is not None:
        chosen, how = min(configured, limit), "configured" + (f" (capped at the model limit {limit})" if configured > limit else "")
    else:
        chosen = choose_max_length(lengths, percentile, limit)
        how = f"auto: p{percentile:g} of training lengths"
        covering = {role: covering_length(split) for role, split in (cut_too or {}).items()}
        short = {role: length for role, length in covering.items() if length > chosen}
        if short:
            raised = _multiple_of_8(max(short.values()), limit)
            how += (f" ({chosen}), raised to {raised} so that at most {MAX_CUT_SHARE:.0%} of {' and '.join(short)} "
                    "is cut")
            chosen = raised
        how += f", model limit {limit}"
    return chosen, length_stats(lengths, chosen), how


def cut_warnings(lengths: dict[str, np.ndarray], max_lengths: dict[str, int], limit: int) -> list[str]:
    """A line for each split of which more than MAX_CUT_SHARE is longer than the max_length it is cut to, naming the
    setting that keeps 95% of it whole (or saying that the model cannot)."""
    warnings = []
    for role, split in lengths.items():
        if len(split) == 0:
            continue
        cut_at = max_lengths[role]
        cut = int(np.sum(np.asarray(split) > cut_at))
        if cut <= MAX_CUT_SHARE * len(split):
            continue
        line = (f"{role}: {cut} of {len(split)} texts ({100 * cut / len(split):.1f}%) are longer than max_length "
                f"{cut_at} tokens and are cut")
        cover = covering_length(split)
        if cover <= limit:
            line += f"; --data.max_length {_multiple_of_8(cover, limit)} keeps {1 - MAX_CUT_SHARE:.0%} of them whole"
        elif cut_at < limit:
            at_limit = float(np.mean(np.asarray(split) > limit))
            line += (f"; --data.max_length {limit} (the model's limit) would cut {100 * at_limit:.1f}%; a model that "
                     "reads longer texts would keep more whole")
        else:
            line += f" at the model's limit of {limit} tokens; a model that reads longer texts would keep more whole"
        warnings.append(line)
    return warnings
