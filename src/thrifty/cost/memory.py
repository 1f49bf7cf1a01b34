"""Training memory counted, not guessed: weights, gradients, optimizer state and saved activations.

Weights, gradients and AdamW's two moments follow from the parameters and which of them train. The
activations autograd keeps for the backward pass depend on the architecture, the strategy (frozen layers
below every trainable weight keep none; LoRA keeps its adapters' inputs) and the batch shape. They are
counted by running one forward pass of the weightless meta-device copy (see ``flops``) under
``torch.autograd.graph.saved_tensors_hooks``, which sees every tensor saved for backward; storages
shared by several saved tensors count once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from thrifty.cost.flops import meta_copy

ADAMW_STATE_TENSORS = 2  # first and second moments, each the size of the trainable parameters


@dataclass(frozen=True)
class TrainingMemory:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    gathered: int = 0  # FSDP: the whole weights (and gradients) of the layers being computed, gathered from the shards

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.gathered

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def saved_activation_bytes(model: torch.nn.Module, batch_size: int, length: int) -> int:
    """Bytes of the tensors autograd saves for backward in one training forward pass of this batch shape."""
    storages: dict[int, int] = {}

    weight_storages = {p.untyped_storage()._cdata for p in model.parameters()}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        if storage._cdata in weight_storages:
            return tensor  # weights (and views of them) are counted as weights, not as activations
        key = storage._cdata  # the C++ storage: the same for every view and every wrapper of it
        storages[key] = max(storages.get(key, 0), storage.nbytes())
        return tensor

    device = next(model.parameters()).device
    input_ids = torch.ones(batch_size, length, dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=input_ids)
    finally:
        model.train(was_training)
    return sum(storages.values())


def training_memory(model: torch.nn.Module, batch_size: int, length: int, dtype_bytes: int = 4, processes: int = 1,
                    sharded: bool = False) -> TrainingMemory:
    """Peak training memory of the largest batch shape, per process: fp32 master weights, gradients, AdamW state,
    activations. `processes`: each runs batch_size / N of every batch; `sharded` (FSDP): each also keeps 1/N of the
    weights, gradients and optimizer state, and gathers whole the layer it computes and the next (prefetched)."""
    params = {id(p): p for p in model.parameters()}.values()  # tied weights count once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    share = -(-batch_size // processes)
    activations = saved_activation_bytes(meta_copy(model), share, length) if trainable else 0
    n = processes if sharded else 1
    gathered = 2 * 2 * largest_layer_parameters(model) * dtype_bytes if sharded and processes > 1 else 0
    return TrainingMemory(weights=-(-total * dtype_bytes // n), gradients=-(-trainable * dtype_bytes // n),
                          optimizer=-(-ADAMW_STATE_TENSORS * trainable * dtype_bytes // n), activations=activations,
                          gathered=gathered)


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks (the classes transformers lists in `_no_split_modules`: its transformer layers),
    looked up through wrappers (PEFT): the units FSDP shards and gathers one at a time."""
    inner = model
    while not getattr(inner, "_no_split_modules", None) and hasattr(inner, "model") and inner.model is not inner:
        inner = inner.model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def largest_layer_parameters(model: torch.nn.Module) -> int:
    """Parameters of the largest repeated block: what FSDP gathers whole at a time (the whole model if none)."""
    sizes = [sum(p.numel() for p in m.parameters()) for m in repeated_blocks(model)]
    return max(sizes) if sizes else sum(p.numel() for p in model.parameters())
