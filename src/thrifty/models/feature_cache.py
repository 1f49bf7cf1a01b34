"""Frozen-layer caching: compute the frozen bottom of the network once per data set, not once per epoch.

With ``freeze`` and ``head`` the embeddings and the bottom layers never change and run in eval mode (no
dropout), so their output for a given text is the same every epoch. ``FrozenFeatureCache`` computes it
once, keeps it unpadded in one flat tensor, and during training feeds it straight into the first trainable
layer: each later epoch pays only for the layers that learn.

How the cached features get in: for the duration of a forward pass the encoder's embedding module is
swapped for a module that returns the cached hidden states, and its layer list for the trainable layers
only. Everything else (attention masks, pooler, classifier) is the model's own code, unchanged. This works
for BERT-style encoders (an ``embeddings`` module and an ``encoder.layer`` list: BERT, RoBERTa, ELECTRA,
MiniLM, ...); other architectures train without the cache.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Optional, Sequence

import torch
import torch.nn as nn

from thrifty.data.batching import collate, sorted_batches
from thrifty.traits import strategy_traits


class _Replay(nn.Module):
    """Stands in for the embedding module: returns the hidden states it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.hidden


@dataclass
class CachedFeatures:
    flat: torch.Tensor  # [total real tokens, hidden]: no padding stored
    offsets: list[int]  # example i is flat[offsets[i]:offsets[i + 1]]

    def batch(self, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        lengths = [self.offsets[i + 1] - self.offsets[i] for i in indices]
        out = torch.zeros(len(indices), max(lengths), self.flat.shape[1], dtype=self.flat.dtype)
        for row, (i, n) in enumerate(zip(indices, lengths)):
            out[row, :n] = self.flat[self.offsets[i] : self.offsets[i] + n]
        return out.to(device, non_blocking=True)

    @property
    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()


class FrozenFeatureCache:
    def __init__(self, model: nn.Module, frozen_layers: int) -> None:
        base = model.base_model
        self.base = base
        self.embeddings = base.embeddings
        self.all_layers = base.encoder.layer
        self.frozen = nn.ModuleList(list(self.all_layers)[:frozen_layers])
        self.trainable = nn.ModuleList(list(self.all_layers)[frozen_layers:])
        self.frozen_layers = frozen_layers
        self.replay = _Replay()
        self.reused = False  # set when features computed earlier in this process are used (their FLOPs not spent again)

    @staticmethod
    def layers_to_cache(strategy_name: str, enabled: bool, strategy_details: dict, model: nn.Module) -> int:
        """How many bottom layers a run caches: the frozen layers of a strategy with a frozen bottom
        (`freeze`, `head`) where supported, else 0."""
        if strategy_traits(strategy_name).caches_frozen_layers and enabled and "frozen_layers" in strategy_details \
                and FrozenFeatureCache.supported(model):
            return int(strategy_details["frozen_layers"])
        return 0

    @staticmethod
    def supported(model: nn.Module) -> bool:
        base = getattr(model, "base_model", None)
        encoder = getattr(base, "encoder", None)
        return (
            isinstance(getattr(base, "embeddings", None), nn.Module)
            and isinstance(getattr(encoder, "layer", None), nn.ModuleList)
            and not getattr(model.config, "is_decoder", False)
        )

    @contextlib.contextmanager
    def _layers(self, layers: nn.ModuleList, embeddings: nn.Module) -> Iterator[None]:
        self.base.embeddings, self.base.encoder.layer = embeddings, layers
        try:
            yield
        finally:
            self.base.embeddings, self.base.encoder.layer = self.embeddings, self.all_layers

    def compute(self, input_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: torch.device,
                autocast_dtype: Optional[torch.dtype] = None) -> CachedFeatures:
        """Run embeddings + frozen layers once over a data set (no gradients, eval mode), under autocast to
        `autocast_dtype` where the run trains in it (the layers' output is kept in fp32 either way)."""
        lengths = [len(ids) for ids in input_ids]
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        flat = torch.empty(offsets[-1], self.base.config.hidden_size)
        # no_grad, not inference_mode: the cached tensors are inputs to layers that will need gradients.
        with torch.no_grad(), self._layers(self.frozen, self.embeddings), \
                torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for idx in sorted_batches(lengths, batch_size):
                batch = {k: v.to(device) for k, v in collate(input_ids, idx, pad_id).items()}
                hidden = self.base(**batch).last_hidden_state.float().cpu()
                for row, i in enumerate(idx):
                    flat[offsets[i] : offsets[i + 1]] = hidden[row, : lengths[i]]
        return CachedFeatures(flat, offsets)

    def forward(self, model: nn.Module, features: CachedFeatures, indices: Sequence[int], batch: dict) -> torch.Tensor:
        """Logits of the full model for `indices`, with the frozen part read from the cache."""
        self.replay.hidden = features.batch(indices, batch["input_ids"].device)
        try:
            with self._layers(self.trainable, self.replay):
                return model(**batch).logits
        finally:
            self.replay.hidden = None


class FeatureMemo:
    """The last frozen-layer features computed, kept by whoever trains several times on the same texts in one process
    (the trials of a search, tuning/search.py). Frozen layers are pretrained weights run without dropout, so the same
    model, layers and texts give the same features in every run: the next run with the same key reuses them."""

    def __init__(self) -> None:
        self.key: Optional[Hashable] = None
        self.features: Optional[dict[str, Any]] = None

    def get(self, key: Hashable, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The features for `key`, computed unless they are the kept ones; and whether they were reused."""
        if self.key == key:
            return self.features, True
        self.key = self.features = None  # one set at a time: they can be hundreds of MiB
        features = compute()
        self.key, self.features = key, features
        return features, False
