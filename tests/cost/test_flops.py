"""FLOPs counted on the meta device against the textbook formula and against a count on real tensors."""

import pytest
import torch

from thrifty.config import StrategyConfig
from thrifty.cost.flops import count_pass, flop_model
from thrifty.models import first_token
from thrifty.models.loading import load_classifier
from thrifty.strategies import apply_strategy


def model_for(path, strategy="full", prune=False, **kwargs):
    model, new_keys = load_classifier(str(path), ["a", "b", "c"])
    model, _ = apply_strategy(model, StrategyConfig(name=strategy, **kwargs), new_keys)
    if prune:
        first_token.enable(model)
    return model


def textbook_forward(config, n, labels=3, pruned=False):
    """Matmul FLOPs of a BERT classifier on one sequence of n tokens (2 per multiply-add)."""
    d, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    layer = 2 * n * (4 * d * d + 2 * d * i) + 4 * n * n * d  # projections + feed-forward, scores + values
    total = layers * layer + 2 * d * d + 2 * d * labels  # + pooler + classifier (first token only)
    if pruned:  # last layer: keys and values for n tokens, everything else for the first token
        total += -layer + 2 * n * 2 * d * d + 2 * (2 * d * d + 2 * d * i) + 4 * n * d
    return total


@pytest.mark.parametrize("pruned", [False, True])
def test_full_matches_the_textbook_count(tiny_bert, pruned):
    model = model_for(tiny_bert, prune=pruned)
    fm = flop_model(model)
    for n in (7, 50, 100):  # none of them a probe length
        assert fm.forward_flops([n]) == pytest.approx(textbook_forward(model.config, n, pruned=pruned), rel=1e-9)
        assert fm.train_flops([n]) == pytest.approx(3 * fm.forward_flops([n]), rel=1e-9)  # backward = 2x forward


def test_frozen_layers_need_forward_only(tiny_bert):
    config = model_for(tiny_bert).config
    d, n = config.hidden_size, 30
    frozen = flop_model(model_for(tiny_bert, "freeze", frozen_layers=1))
    per_layer = 2 * n * (4 * d * d + 2 * d * config.intermediate_size) + 4 * n * n * d
    top = per_layer + 2 * d * d + 2 * d * 3  # the one trainable layer + pooler + classifier
    # Backward: weight and input gradients of everything above the frozen layer, except the input
    # gradient of the trainable layer's query/key/value projections (nothing below wants it).
    expected_backward = 2 * top - 3 * 2 * n * d * d
    assert frozen.train_flops([n]) - frozen.forward_flops([n]) == pytest.approx(expected_backward, rel=1e-9)
    # What a frozen-layer cache saves in later epochs: exactly the frozen layer's forward pass.
    cached = flop_model(model_for(tiny_bert, "freeze", frozen_layers=1), frozen_layers=1)
    assert cached.frozen_forward_flops([n]) == pytest.approx(per_layer, rel=1e-9)


def test_lora_back_propagates_through_the_frozen_base(tiny_bert):
    full, lora, head = (flop_model(model_for(tiny_bert, s)) for s in ("full", "lora", "head"))
    n = [40]
    assert head.train_flops(n) - head.forward_flops(n) < 0.01 * head.forward_flops(n)  # only the classifier
    lora_backward = lora.train_flops(n) - lora.forward_flops(n)
    full_backward = full.train_flops(n) - full.forward_flops(n)
    # No weight gradients for the base, but input gradients through every layer: half of full's backward for
    # the projections, all of it for attention (no weights there), plus the adapters themselves.
    assert 0.5 * full_backward < lora_backward < 0.75 * full_backward


def test_meta_count_equals_a_count_on_real_tensors(tiny_bert):
    model = model_for(tiny_bert)
    torch.manual_seed(0)
    forward, total, _ = count_pass(model, length=23, batch_size=3)
    fm = flop_model(model)
    assert forward == pytest.approx(fm.forward_flops([23] * 3), rel=1e-9)
    assert total == pytest.approx(fm.train_flops([23] * 3), rel=1e-9)
    assert fm.batches_train_flops([(3, 23)]) == pytest.approx(total, rel=1e-9)
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model itself was never moved


def test_counting_does_not_depend_on_hub_kernels(tiny_llama):
    """transformers 5 depends on the `kernels` package and, unless USE_HUB_KERNELS=NO, kernelizes every model it loads
    again at each train()/eval() switch, which refuses the meta device. thrifty turns hub kernels off for its own
    process (it runs offline), and the meta skeleton counts plain PyTorch layers even for a model kernelized before."""
    pytest.importorskip("kernels")
    from transformers import AutoModelForCausalLM
    from transformers.utils.import_utils import is_kernels_available

    assert is_kernels_available()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    expected = flop_model(model)
    model._use_kernels = True  # as from_pretrained leaves a model with USE_HUB_KERNELS=YES
    assert flop_model(model) == expected
    assert model._use_kernels  # the caller's model is left as it was


def test_thrifty_turns_hub_kernels_off_unless_asked(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    code = "import os, thrifty; print(os.environ.get('USE_HUB_KERNELS'))"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "NO"
    env["USE_HUB_KERNELS"] = "YES"  # an explicit choice is the user's
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "YES"
