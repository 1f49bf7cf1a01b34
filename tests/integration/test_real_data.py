"""The real packaged model learns real tasks: small subsets of SST-2 and Banking77.

Each test compares the trained model with the same model before training, on the same validation texts,
so "learned" means better than both chance and the untrained network.
"""

import numpy as np
import pytest

import thrifty
from thrifty.config import DataConfig
from thrifty.data.prepare import prepare_data
from thrifty.data.tokenize import encode
from thrifty.evaluation.evaluate import evaluate_split
from thrifty.models.loading import load_classifier, load_tokenizer

from tests.conftest import shared_file

pytestmark = pytest.mark.slow  # the real model on real data: the full suite, not the fast tier


def untrained_accuracy(run_dir, minilm_dir, data_config: DataConfig, seed: int) -> float:
    """The same packaged model with a fresh head, scored on the same validation subset as the run."""
    import json

    import torch

    data = prepare_data(data_config, seed)
    tokenizer = load_tokenizer(str(minilm_dir))
    torch.manual_seed(seed)
    model, _ = load_classifier(str(minilm_dir), data.label_names)
    max_length = json.loads((run_dir / "metrics.json").read_text())["model"]["max_length"]
    ids = encode(tokenizer, data.validation.texts, max_length)
    metrics = evaluate_split(model, ids, data.validation.labels, data.label_names, tokenizer.pad_token_id, 128,
                             torch.device("cpu"))
    return metrics["accuracy"]


def sst2_config(**overrides):
    config = {
        "data": {"train": str(shared_file("sst2", "stsa.binary.train")),
                 "validation": str(shared_file("sst2", "stsa.binary.dev")),
                 "max_train_examples": 480, "max_eval_examples": 300},
        "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4, "seed": 3, "num_threads": 2},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


def test_sst2_full_fine_tuning_learns(tmp_path, minilm_dir):
    config = sst2_config()
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    accuracy = result.metrics["validation"]["accuracy"]
    before = untrained_accuracy(result.run_dir, minilm_dir, DataConfig(**config["data"]), 3)
    assert accuracy >= 0.75, accuracy
    assert accuracy >= before + 0.15, (before, accuracy)
    assert result.metrics["validation"]["examples"] == 300
    # 480 rows in batches of 16 are 30 batches, under one grouping window (50): batched at random (data/batching.py),
    # so they pad as random batches do; the grouping of larger sets is tested in tests/data/test_batching.py
    assert result.metrics["train"]["padding_fraction"] > 0.2


def test_sst2_lora_learns(tmp_path):
    config = sst2_config(strategy={"name": "lora", "lora_r": 8})
    del config["train"]["learning_rate"]  # LoRA's own default (1e-3), not full fine-tuning's
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    assert result.metrics["validation"]["accuracy"] >= 0.70
    assert result.metrics["model"]["trainable_parameters"] < 0.05 * result.metrics["model"]["total_parameters"]


def test_banking77_multiclass_learns(tmp_path, minilm_dir):
    config = {
        "data": {"train": str(shared_file("banking77", "train.csv")), "label_column": "category",
                 "validation_fraction": 0.1, "max_train_examples": 1540, "max_eval_examples": 385},
        "train": {"epochs": 3, "batch_size": 32, "learning_rate": 3e-4, "seed": 0, "num_threads": 2,
                  "metric": "macro_f1"},
    }
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    validation = result.metrics["validation"]
    assert len(result.metrics["model"]["labels"]) == 77
    before = untrained_accuracy(result.run_dir, minilm_dir, DataConfig(**config["data"]), 0)
    assert validation["accuracy"] >= 0.5 and validation["macro_f1"] >= 0.45, validation["accuracy"]
    assert validation["accuracy"] >= before + 0.3
    assert np.asarray(validation["confusion_matrix"]).shape == (77, 77)


def test_conll2003_ner_learns_with_full_and_lora(tmp_path):
    """The real model tags real entities: a CoNLL-2003 subset, scored against the published dev file's subset."""
    data = {"train": str(shared_file("conll2003", "train.txt")), "validation": str(shared_file("conll2003", "valid.txt")),
            "max_train_examples": 1500, "max_eval_examples": 400}
    config = {"task": "token_classification", "data": data,
              "train": {"epochs": 2, "batch_size": 32, "learning_rate": 2e-4, "seed": 1, "num_threads": 2},
              "tracking": {"energy": False}}
    full = thrifty.train(config, output=tmp_path / "full", progress=False).metrics["validation"]
    assert full["f1"] >= 0.55, full["f1"]  # an untrained head finds no entities (F1 ~0)
    assert set(full["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    lora = {**config, "strategy": {"name": "lora"}, "train": {**config["train"], "learning_rate": 1e-3}}
    result = thrifty.train(lora, output=tmp_path / "lora", progress=False)
    assert result.metrics["validation"]["f1"] >= 0.3, result.metrics["validation"]["f1"]
    assert (tmp_path / "lora" / "model" / "adapter_model.safetensors").exists()
    entities = thrifty.predict(tmp_path / "lora", ["Angela Merkel met Boris Johnson in London."])[0]["entities"]
    assert all(e["type"] in {"LOC", "MISC", "ORG", "PER"} for e in entities)
