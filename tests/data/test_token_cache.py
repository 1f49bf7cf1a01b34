"""The on-disk token cache: a hit returns exactly what tokenising returns; any change of input is a miss."""

import json

import numpy as np
import pytest

import thrifty
from thrifty.data.token_cache import TokenCache
from thrifty.data.tokenize import encode, token_lengths
from thrifty.models.loading import load_tokenizer

from tests.conftest import tiny_config

TEXTS = ["A short one.", "A somewhat longer sentence, with a comma and more words in it than the first.", "", "Ünïcode ✓"]


@pytest.fixture
def tokenizer(minilm_dir):
    return load_tokenizer(str(minilm_dir))


def as_lists(ids):
    return [list(map(int, x)) for x in ids]


def test_hit_returns_what_tokenising_returns(tokenizer, tmp_path):
    first = TokenCache(tmp_path, tokenizer)
    fresh = first.encode(TEXTS, 12, encode)
    assert (first.hits, first.misses) == (0, 1)
    second = TokenCache(tmp_path, tokenizer)  # a later run: a new object, the same folder
    cached = second.encode(TEXTS, 12, encode)
    assert (second.hits, second.misses) == (1, 0)
    assert as_lists(cached) == as_lists(fresh) == encode(tokenizer, TEXTS, 12)
    assert second.lengths(TEXTS, token_lengths).tolist() == token_lengths(tokenizer, TEXTS).tolist()


def test_any_change_is_a_miss(tokenizer, minilm_dir, tmp_path):
    cache = TokenCache(tmp_path, tokenizer)
    cache.encode(TEXTS, 12, encode)
    cache.encode(TEXTS, 16, encode)  # another max_length
    cache.encode(TEXTS[:-1] + ["Ünïcode ✓ "], 12, encode)  # one text changed by one character
    cache.encode(TEXTS[1:], 12, encode)  # one text fewer
    assert (cache.hits, cache.misses) == (0, 4)
    lower = load_tokenizer(str(minilm_dir))
    lower.add_special_tokens({"additional_special_tokens": ["<extra>"]})  # another tokenizer definition
    other = TokenCache(tmp_path, lower)
    other.encode(TEXTS, 12, encode)
    assert other.misses == 1


def test_a_damaged_entry_is_recomputed(tokenizer, tmp_path):
    TokenCache(tmp_path, tokenizer).encode(TEXTS, 12, encode)
    [entry] = list(tmp_path.glob("*.npz"))
    entry.write_bytes(b"not a numpy file")
    cache = TokenCache(tmp_path, tokenizer)
    assert as_lists(cache.encode(TEXTS, 12, encode)) == encode(tokenizer, TEXTS, 12)
    assert cache.misses == 1
    assert np.load(entry, allow_pickle=False)["offsets"].shape == (len(TEXTS) + 1,)  # replaced by a good entry


def test_training_reads_the_cache_and_loses_nothing(tiny_bert, small_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path / "cache"))
    first = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "a", progress=False)
    second = thrifty.train(tiny_config(tiny_bert, small_csv, epochs=1), output=tmp_path / "b", progress=False)
    off = tiny_config(tiny_bert, small_csv, epochs=1)
    off["data"]["cache_tokens"] = False
    third = thrifty.train(off, output=tmp_path / "c", progress=False)
    reports = [json.loads((r.run_dir / "data_report.json").read_text())["tokens"]["cache"] for r in (first, second, third)]
    assert reports[0]["misses"] == 4 and reports[0]["hits"] == 0  # train and validation: lengths and ids
    assert reports[1]["hits"] == 4 and reports[1]["misses"] == 0  # all four from disk
    assert reports[2]["folder"] is None
    logs = [(r.run_dir / "train_log.jsonl").read_text().splitlines() for r in (first, second, third)]
    assert [json.loads(l)["loss"] for l in logs[0]] == [json.loads(l)["loss"] for l in logs[1]] \
        == [json.loads(l)["loss"] for l in logs[2]]
