"""Dropout whose random masks cost a third of PyTorch's on a CPU, for training.

Why: on a CPU PyTorch draws a dropout mask one Mersenne-Twister number per element (`bernoulli_`). Once the matrix
products run in bf16 that draw is the largest cost after them: in a profile of all-MiniLM-L6-v2 training steps in
bf16 on the AMD EPYC (batch 32, 26 tokens), the 20 dropout masks of a step took 12% of it (30 ms of 258). Here the
mask comes from a counter-based generator instead: one number from PyTorch's generator seeds each mask (so a seeded
run repeats, and a resumed run, whose generator state is restored, goes on as it would have), and splitmix64 (a
well-tested 64-bit mixing function) turns the counter 0, 1, 2, ... into 64 random bits per four elements, each
element keeping a 16-bit share: an element is dropped with probability round(p * 65536) / 65536, p to 1e-5. About a
dozen vectorised integer operations over a quarter of the elements replace one random draw per element.

What stays the same: each element is kept independently with probability 1 - p and scaled by 1 / (1 - p), as
nn.Dropout does; the mask is kept as booleans for the backward pass (what autograd keeps, so memory estimates hold);
evaluation and p = 0 do nothing. What changes: the random stream, so a seeded run draws other masks than before.

`enable(model)` swaps every nn.Dropout of a model for FastDropout and points its attention at `thrifty_sdpa`, which
is PyTorch's SDPA except that, when training with attention dropout, it computes the attention probabilities itself
and drops them with these masks (SDPA on a CPU takes an unfused path too once dropout is on). Its two products run in
the dtype of the query: under bf16 autocast they are bf16 like every other matrix product of the step (the softmax is
computed in fp32); evaluation, with no dropout, goes through SDPA itself. `disable(model)`
undoes both before the model is saved, so a saved model is exactly what it would be without this. On a GPU nothing
is swapped: its generator (Philox) is already cheap.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)  # splitmix64's constants, as signed 64-bit integers
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
ATTENTION = "thrifty_sdpa"


def _shifted(z: torch.Tensor, bits: int) -> torch.Tensor:
    """z >> bits as an unsigned (logical) shift: PyTorch's shift of a signed integer copies the sign bit in."""
    return z.bitwise_right_shift(bits).bitwise_and_((1 << (64 - bits)) - 1)


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A boolean mask of `shape`, each element True (kept) with probability 1 - p, independently."""
    count = math.prod(shape)
    words = (count + 3) // 4
    seed = int(torch.randint(-(1 << 62), 1 << 62, (1,)))  # from PyTorch's generator: seeded, saved in checkpoints
    z = torch.arange(words, dtype=torch.int64, device=device).mul_(_GOLDEN).add_(seed)
    z = z.bitwise_xor_(_shifted(z, 30)).mul_(_MIX1)
    z = z.bitwise_xor_(_shifted(z, 27)).mul_(_MIX2)
    z = z.bitwise_xor_(_shifted(z, 31))
    threshold = round(p * 65536) - 32768  # a 16-bit share below it (signed) drops its element
    return (z.view(torch.int16)[:count] >= threshold).view(shape)


class _Drop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(mask)
        ctx.scale = 1.0 / (1.0 - p)
        return _apply(x, mask, ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return _apply(grad, mask, ctx.scale), None


def _apply(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    """x * keep * scale. The mask's bytes read as uint8 (0 or 1) multiply in a vectorised kernel; a bool mask does not:
    on the EPYC, for the 32 x 30 x 384 bf16 activations of a step, masked_fill then mul took 250 us, this 96 us."""
    return x.mul(keep.view(torch.uint8)).mul_(scale)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return _Drop.apply(x, p)


class FastDropout(nn.Module):
    """nn.Dropout with the cheaper masks (same `p`, no parameters: state dicts do not change)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
               **kwargs):
    """SDPA, or with attention dropout in training: softmax(q k^T * scaling + mask), dropped, times v."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = kwargs.get("is_causal")
    causal = causal if causal is not None else getattr(module, "is_causal", True)  # as SDPA's wrapper reads it
    if dropout == 0.0 or not module.training or causal or getattr(module, "num_key_value_groups", 1) > 1 \
            or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(_Drop.apply(probs, dropout), value)
    return output.transpose(1, 2).contiguous(), None


def _register() -> None:
    """The attention function, and SDPA's mask for it: transformers builds no mask at all for an implementation it has
    no mask function for (padding would then be attended to)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, _attention)
    if ATTENTION not in AttentionMaskInterface._global_mapping:
        AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _configs(model: nn.Module) -> list:
    return [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]


def enable(model: nn.Module, device: torch.device) -> int:
    """Swap the model's dropout for the cheaper masks (CPU only); the number of dropout modules swapped."""
    if device.type != "cpu":
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))  # a new module would be training
                swapped += 1
    configs = [c for c in _configs(model) if c._attn_implementation == "sdpa"]
    if configs:
        _register()
        for config in configs:
            config._attn_implementation = ATTENTION
    return swapped


def disable(model: nn.Module) -> None:
    """Undo enable(): nn.Dropout back in place, attention back to SDPA."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastDropout):
                setattr(parent, name, nn.Dropout(child.p).train(child.training))
    for config in _configs(model):
        if config._attn_implementation == ATTENTION:
            config._attn_implementation = "sdpa"
