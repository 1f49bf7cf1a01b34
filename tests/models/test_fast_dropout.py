"""The cheaper dropout keeps nn.Dropout's contract: each element kept with probability 1 - p, independently, scaled by
1 / (1 - p); the same masks for the same seed; the gradient through the same mask; nothing in evaluation; and a
model with it swapped in computes, and saves, what it would without."""

import pytest
import torch
from torch import nn

from thrifty.models import fast_dropout
from thrifty.models.fast_dropout import FastDropout, dropout, keep_mask

CPU = torch.device("cpu")


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_each_element_is_dropped_with_probability_p_independently(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last word is cut
    mask = keep_mask(torch.Size([n]), p, CPU).float()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs((1 - mask.mean().item()) - p) < 5 * sigma
    for lag in (1, 2, 3, 4, 5, 384):  # neighbours share a 64-bit word (lags 1-3) or not: no correlation either way
        a, b = mask[:-lag] - mask.mean(), mask[lag:] - mask.mean()
        correlation = (a * b).mean() / (mask.var() + 1e-12)
        assert abs(correlation.item()) < 5 / n ** 0.5, f"lag {lag}: correlation {correlation.item():.4f}"
    again = keep_mask(torch.Size([n]), p, CPU).float()
    assert abs(((mask == 1) & (again == 1)).float().mean().item() - (1 - p) ** 2) < 5 * sigma  # a new draw each call


def test_the_same_seed_draws_the_same_masks():
    torch.manual_seed(3)
    first = [keep_mask(torch.Size([7, 9]), 0.2, CPU) for _ in range(2)]
    torch.manual_seed(3)
    second = [keep_mask(torch.Size([7, 9]), 0.2, CPU) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and not torch.equal(*first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_and_backward_use_one_mask_and_scale(dtype):
    torch.manual_seed(0)
    x = torch.randn(64, 33, dtype=dtype, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    assert y.dtype == dtype
    torch.testing.assert_close(y[kept], (x[kept] / 0.75).to(dtype))
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(kept, weights / 0.75, torch.zeros_like(weights)).to(dtype))
    assert torch.equal(dropout(x, 0.25, training=False), x) and torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_it_keeps_only_a_boolean_mask_for_the_backward_pass():
    saved = []
    x = torch.randn(128, 64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        dropout(x * 2, 0.1).sum()
    assert [t.dtype for t in saved if t.shape == x.shape] == [torch.bool]


def test_a_model_with_it_computes_and_saves_what_it_would_without(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    ids = torch.randint(1000, 20000, (6, 12))
    mask = torch.ones_like(ids)
    mask[:2, 8:] = 0  # padding: the attention mask must still be built and applied
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        swapped = fast_dropout.enable(model, CPU)
        assert swapped == sum(1 for m in model.modules() if isinstance(m, FastDropout)) > 0
        assert all(not m.training for m in model.modules())  # the swapped modules kept eval mode
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before, rtol=0, atol=0)
        model.train()
        for module in model.modules():  # training with nothing dropped: the same function as SDPA's
            if isinstance(module, FastDropout):
                module.p = 1e-9
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before, rtol=1e-5, atol=1e-5)
    fast_dropout.disable(model)
    assert not any(isinstance(m, FastDropout) for m in model.modules())
    assert model.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path / "saved")
    assert "thrifty" not in (tmp_path / "saved" / "config.json").read_text()


def test_nothing_is_swapped_on_a_gpu():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
    assert fast_dropout.enable(model, torch.device("cuda")) == 0 and type(model[1]) is nn.Dropout


def test_a_mask_applied_as_bytes_gives_what_masked_fill_gives_in_every_float_dtype():
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(4, 7, 9, generator=generator).to(dtype).transpose(1, 2)  # not contiguous
        keep = torch.rand(4, 9, 7, generator=generator) > 0.3
        got = fast_dropout._apply(x, keep, 1 / 0.7)
        assert got.dtype == dtype
        assert torch.equal(got, x.masked_fill(~keep, 0).mul_(1 / 0.7))
