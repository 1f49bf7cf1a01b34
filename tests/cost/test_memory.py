"""Training memory counted on the meta device against what PyTorch's profiler sees allocated."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from thrifty.config import StrategyConfig
from thrifty.cost.memory import training_memory
from thrifty.models.loading import load_classifier
from thrifty.strategies import apply_strategy


def measured_forward_bytes(model, batch_size, length) -> int:
    """Net bytes allocated by a real training forward pass whose graph is kept alive (what backward needs)."""
    model.train()
    ids = torch.ones(batch_size, length, dtype=torch.long)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        logits = model(input_ids=ids).logits
    net = sum(e.cpu_memory_usage for e in prof.events() if e.cpu_parent is None)
    del logits
    return net


@pytest.mark.parametrize("strategy", ["full", "freeze", "lora"])
def test_activations_match_the_profiler(minilm_dir, strategy):
    model, new_keys = load_classifier(str(minilm_dir), ["a", "b"])
    model, _ = apply_strategy(model, StrategyConfig(name=strategy), new_keys)
    counted = training_memory(model, batch_size=8, length=48)
    measured = measured_forward_bytes(model, 8, 48)
    # The logits themselves are allocated too but are an output, not a saved activation: a few bytes.
    assert counted.activations == pytest.approx(measured, rel=0.02)


def test_state_follows_the_trainable_parameters(minilm_dir):
    model, new_keys = load_classifier(str(minilm_dir), ["a", "b"])
    full = training_memory(model, 8, 32)
    total = sum(p.numel() for p in model.parameters())
    assert full.weights == full.gradients == 4 * total and full.optimizer == 8 * total
    model, _ = apply_strategy(model, StrategyConfig(name="lora"), new_keys)
    lora = training_memory(model, 8, 32)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora.gradients == 4 * trainable < full.gradients / 50
    assert lora.total < full.total and lora.activations > 0.8 * full.activations  # LoRA still keeps activations
    assert training_memory(model, 16, 32).activations == pytest.approx(2 * lora.activations, rel=0.01)
