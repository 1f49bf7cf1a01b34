"""Training FLOPs counted, not guessed: the model's own forward and backward, run on the meta device.

A formula per architecture and strategy (6 x parameters per token, minus frozen layers, plus LoRA's
back-propagation through the layers above the lowest adapter, ...) is easy to get subtly wrong. Instead
thrifty builds the configured model skeleton on PyTorch's meta device (shapes only: no weights, no memory,
no arithmetic), applies the same strategy, and lets ``torch.utils.flop_counter`` count the matrix
products of one forward and backward pass. Autograd itself decides what backward computes: frozen
layers below every trainable weight get no backward at all, LoRA back-propagates through every layer
above its lowest adapter, embeddings are lookups and count nothing. Counting takes milliseconds.

FLOPs of a sequence are a polynomial in its length n (linear layers ~ n, attention ~ n^2, the first-token
head ~ 1), so three probe lengths determine them for every length; a data set's FLOPs are then summed
over its real (padded) batches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

PROBE_LENGTHS = (16, 32, 64)


@dataclass(frozen=True)
class FlopModel:
    """FLOPs of one sequence of length n: c0 + c1 * n + c2 * n^2, for a forward and a training pass."""

    forward: tuple[float, float, float]
    train: tuple[float, float, float]
    frozen_forward: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the bottom layers a frozen-layer cache replaces

    @staticmethod
    def _eval(coeffs: tuple[float, float, float], n: np.ndarray) -> np.ndarray:
        return coeffs[0] + coeffs[1] * n + coeffs[2] * n * n

    def forward_flops(self, lengths: Sequence[int] | np.ndarray) -> float:
        return float(np.sum(self._eval(self.forward, np.asarray(lengths, dtype=np.float64))))

    def train_flops(self, lengths: Sequence[int] | np.ndarray) -> float:
        return float(np.sum(self._eval(self.train, np.asarray(lengths, dtype=np.float64))))

    def frozen_forward_flops(self, lengths: Sequence[int] | np.ndarray) -> float:
        return float(np.sum(self._eval(self.frozen_forward, np.asarray(lengths, dtype=np.float64))))

    def batches_train_flops(self, batch_widths: Sequence[tuple[int, int]]) -> float:
        """Sum over (batch size, padded width) pairs: padded positions are computed too."""
        return float(sum(size * self._eval(self.train, np.float64(width)) for size, width in batch_widths))


def count_pass(model: torch.nn.Module, length: int, batch_size: int = 1, frozen_layers: int = 0) -> tuple[int, int, int]:
    """(forward, forward + backward, forward of the bottom `frozen_layers` encoder layers) FLOPs of one batch,
    on whatever device the model is (on meta: free)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    input_ids = torch.ones(batch_size, length, dtype=torch.long, device=device)
    inputs: dict = {"input_ids": input_ids}
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):  # the decoder reads as many tokens
        inputs["decoder_input_ids"] = input_ids
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            logits = model(**inputs).logits
            forward = counter.get_total_flops()
            wanted = tuple(f".layer.{i}" for i in range(frozen_layers))
            frozen = sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name.endswith(wanted))
            if any(p.requires_grad for p in model.parameters()):
                logits.float().sum().backward()
            total = counter.get_total_flops()
    finally:
        model.train(was_training)
    return int(forward), int(total), int(frozen)


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    # Deep-copying parameters onto "meta" through a memo avoids ever duplicating real weights in memory.
    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    skeleton = copy.deepcopy(model, memo)
    for module in skeleton.modules():
        # Hub kernels (transformers' `kernels` integration, on when USE_HUB_KERNELS=YES) re-kernelize a model on
        # every train()/eval() switch, and refuse the meta device: the skeleton counts the plain PyTorch layers.
        if getattr(module, "_use_kernels", False):
            module._use_kernels = False
            module._kernels_mode = None
    if getattr(getattr(skeleton, "config", None), "use_cache", None) is False:
        # A model that writes text trains without its key/value cache (inputs.load_model); without one (and without a
        # mask) transformers reads the positions' values to look for packed sequences, which a meta tensor does not
        # have. The copy's cache costs no FLOPs and saves nothing for backward.
        skeleton.config.use_cache = True
    return skeleton


def flop_model(model: torch.nn.Module, frozen_layers: int = 0) -> FlopModel:
    """Fit c0 + c1 n + c2 n^2 to exact counts at three lengths (exact: the counts are that polynomial)."""
    skeleton = meta_copy(model)
    counts = np.array([count_pass(skeleton, n, frozen_layers=frozen_layers) for n in PROBE_LENGTHS], dtype=np.float64)
    x = np.array([[1.0, n, n * n] for n in PROBE_LENGTHS])
    forward, train, frozen = (tuple(float(v) for v in np.linalg.solve(x, counts[:, k])) for k in range(3))
    return FlopModel(forward, train, frozen)
