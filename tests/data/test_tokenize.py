"""Tokenisation: the real model tokenizer, length statistics and the automatic max_length."""

import numpy as np

from thrifty.data.tokenize import choose_max_length, encode, length_stats, resolve_max_length
from thrifty.models.loading import load_tokenizer


def test_choose_max_length_covers_the_percentile():
    lengths = np.array([10] * 98 + [60, 300])
    assert choose_max_length(lengths, 98.0, 512) == 16  # multiple of 8 above the 98th percentile
    assert choose_max_length(lengths, 100.0, 128) == 128  # never past the model's limit


def test_stats_count_truncations():
    stats = length_stats(np.array([5, 10, 20, 40]), max_length=16)
    assert stats["truncated"] == 2 and stats["max"] == 40 and stats["truncated_fraction"] == 0.5


def test_real_tokenizer_truncates_but_keeps_special_tokens(minilm_dir):
    tokenizer = load_tokenizer(str(minilm_dir))
    texts = ["short one", "word " * 200]
    max_length, stats, how = resolve_max_length(tokenizer, None, texts, configured=None, percentile=50.0)
    ids = encode(tokenizer, texts, 16)
    assert ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id
    assert len(ids[1]) == 16 and ids[1][-1] == tokenizer.sep_token_id
    assert stats["max"] == 202 and "auto" in how
    assert len(ids[0]) == 4  # no padding at encoding time


def test_model_limit_is_the_smaller_of_tokenizer_and_positions(minilm_dir):
    from types import SimpleNamespace

    from thrifty.data.tokenize import model_length_limit

    tokenizer = load_tokenizer(str(minilm_dir))  # says 512
    assert model_length_limit(tokenizer, SimpleNamespace(max_position_embeddings=128)) == 128
    assert model_length_limit(tokenizer, SimpleNamespace(max_position_embeddings=514)) == 512
