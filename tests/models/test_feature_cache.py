"""Frozen-layer caching gives the same training as recomputing the frozen layers every step."""

import json

import pytest
import torch

import thrifty
from thrifty.config import StrategyConfig
from thrifty.data.batching import collate
from thrifty.models.loading import load_classifier, load_tokenizer
from thrifty.strategies import apply_strategy
from thrifty.models.feature_cache import FrozenFeatureCache

from tests.conftest import tiny_config


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["freeze", "head"])
def test_cached_and_recomputed_runs_match(tiny_bert, small_csv, tmp_path, strategy):
    runs = {}
    for cached in (True, False):
        config = tiny_config(tiny_bert, small_csv, epochs=3, learning_rate=3e-3, cache_frozen_layers=cached)
        config["strategy"] = {"name": strategy, "frozen_layers": 1}
        runs[cached] = thrifty.train(config, output=tmp_path / f"{strategy}-{cached}", progress=False)
    assert runs[True].metrics["train"]["frozen_cache"]["bytes"] > 0
    assert runs[False].metrics["train"]["frozen_cache"] is None
    assert losses(runs[True].run_dir) == pytest.approx(losses(runs[False].run_dir), abs=1e-5)
    a = [h["loss"] for h in runs[True].metrics["history"]]
    b = [h["loss"] for h in runs[False].metrics["history"]]
    assert a == pytest.approx(b, abs=1e-5)
    assert runs[True].metrics["validation"]["accuracy"] == runs[False].metrics["validation"]["accuracy"]


def test_cached_features_equal_the_frozen_layers_output(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    model, new = load_classifier(str(tiny_bert), ["a", "b"])
    model, info = apply_strategy(model, StrategyConfig(name="freeze", frozen_layers=1), new)
    texts = ["a short one", "a somewhat longer sentence with more words in it", "mid length text"]
    ids = tokenizer(texts)["input_ids"]
    cache = FrozenFeatureCache(model, 1)
    features = cache.compute(ids, tokenizer.pad_token_id, batch_size=2, device=torch.device("cpu"))
    assert features.flat.shape[0] == sum(len(x) for x in ids)  # no padding stored
    model.eval()
    with torch.no_grad():
        batch = collate(ids, [0, 1, 2], tokenizer.pad_token_id)
        expected = model.base_model(**batch, output_hidden_states=True).hidden_states[1]
    for i, seq in enumerate(ids):
        got = features.flat[features.offsets[i] : features.offsets[i + 1]]
        torch.testing.assert_close(got, expected[i, : len(seq)], atol=1e-5, rtol=1e-5)


def test_frozen_layers_stay_in_eval_mode(tiny_bert):
    model, new = load_classifier(str(tiny_bert), ["a", "b"])
    model, _ = apply_strategy(model, StrategyConfig(name="freeze", frozen_layers=1), new)
    model.train()
    layers = model.base_model.encoder.layer
    assert not model.base_model.embeddings.training and not layers[0].training
    assert layers[1].training and model.classifier.training


def test_a_memo_keeps_the_last_features_for_the_same_key_only():
    from thrifty.models.feature_cache import FeatureMemo

    memo, computed = FeatureMemo(), []

    def compute(name):
        return lambda: computed.append(name) or {"train": name}

    assert memo.get("a", compute("a")) == ({"train": "a"}, False)
    assert memo.get("a", compute("again")) == ({"train": "a"}, True)  # reused, not computed again
    assert memo.get("b", compute("b")) == ({"train": "b"}, False)
    assert memo.get("a", compute("a2")) == ({"train": "a2"}, False)  # one set at a time
    assert computed == ["a", "b", "a2"]
