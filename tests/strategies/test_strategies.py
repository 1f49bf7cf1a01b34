"""Strategies set exactly the trainable weights they promise, on BERT- and Llama-style models."""

import pytest

from thrifty.config import StrategyConfig
from thrifty.errors import ModelError
from thrifty.models.loading import count_parameters, load_classifier, load_tokenizer
from thrifty.strategies import apply_strategy, find_layers, lora_target_modules

LABELS = ["a", "b", "c"]


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_full_trains_everything(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    model, info = apply_strategy(model, StrategyConfig(name="full"), new)
    assert info.trainable_parameters == info.total_parameters == count_parameters(model)[0]


def test_head_trains_pooler_and_classifier_only(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    assert {"classifier.weight", "classifier.bias"} <= new
    model, info = apply_strategy(model, StrategyConfig(name="head"), new)
    names = trainable_names(model)
    assert names == {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    assert info.trainable_parameters == (32 * 3 + 3) + (32 * 32 + 32)


def test_freeze_bottom_layers_and_embeddings(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    model, info = apply_strategy(model, StrategyConfig(name="freeze", frozen_layers=1), new)
    names = trainable_names(model)
    assert not any(n.startswith("bert.embeddings") for n in names)
    assert not any(".layer.0." in n for n in names)
    assert any(".layer.1." in n for n in names) and "classifier.weight" in names
    assert info.details == {"frozen_layers": 1, "of_layers": 2}


def test_freeze_every_layer_is_rejected(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    with pytest.raises(ModelError, match="the model has 2 layers; use strategy.frozen_layers below 2"):
        apply_strategy(model, StrategyConfig(name="freeze", frozen_layers=2), new)


def test_lora_on_bert_finds_attention_projections(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    assert lora_target_modules(model) == ["query", "key", "value"]
    model, info = apply_strategy(model, StrategyConfig(name="lora", lora_r=4), new)
    names = trainable_names(model)
    assert any("lora_A" in n for n in names) and any("classifier" in n for n in names)
    assert not any("intermediate" in n for n in names)
    assert info.trainable_parameters < 0.2 * info.total_parameters


def test_lora_on_llama_and_padding_for_decoders(tiny_llama):
    tokenizer = load_tokenizer(str(tiny_llama))
    model, new = load_classifier(str(tiny_llama), LABELS, pad_token_id=tokenizer.pad_token_id)
    assert model.config.pad_token_id is not None  # a decoder needs it to find the last real token
    assert lora_target_modules(model) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert len(find_layers(model)) == 2
    model, info = apply_strategy(model, StrategyConfig(name="lora"), new)
    assert any("score" in n for n in trainable_names(model))


def test_lora_with_unknown_targets_is_rejected(tiny_bert):
    model, new = load_classifier(str(tiny_bert), LABELS)
    with pytest.raises(ModelError, match="are not Linear layers"):
        apply_strategy(model, StrategyConfig(name="lora", lora_target_modules=["q_proj"]), new)


def test_lora_on_a_model_without_known_projections():
    import torch.nn as nn

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = nn.Linear(4, 4)

    with pytest.raises(ModelError, match="strategy lora does not fit Odd.*set strategy.lora_target_modules"):
        lora_target_modules(Odd())


def test_missing_model_folder_and_non_transformer(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        load_classifier("./no/such/model", LABELS)
    (tmp_path / "weights.txt").write_text("not a model")
    with pytest.raises(ModelError, match="not a transformer model folder"):
        load_classifier(str(tmp_path), LABELS)


def test_pickled_weights_are_refused(tmp_path, tiny_bert):
    import shutil

    shutil.copy(tiny_bert / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="does not load because unpickling can run code"):
        load_classifier(str(tmp_path), LABELS)


def test_dropout_override_reaches_the_model(tiny_bert):
    model, _ = load_classifier(str(tiny_bert), LABELS, dropout=0.0)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0
    assert model.dropout.p == 0.0  # the classifier's own dropout layer follows (classifier_dropout)


def test_the_default_search_space_of_each_strategy():
    from thrifty.strategies import search_space

    assert search_space("full", 6)["train.learning_rate"] == {"low": 1e-5, "high": 3e-4, "log": True}
    assert search_space("freeze", 6)["strategy.frozen_layers"] == {"low": 1, "high": 5}
    assert "strategy.frozen_layers" not in search_space("freeze", 1)  # one layer: nothing to choose
    assert list(search_space("lora", 6))[-2:] == ["strategy.lora_r", "strategy.lora_alpha"]
    assert search_space("head", 6)["train.learning_rate"]["low"] == 1e-4
    few = search_space("fewshot", 6)
    assert few["train.epochs"] == {"low": 4, "high": 24} and few["train.batch_size"] == {"choices": [8, 16, 32]}
