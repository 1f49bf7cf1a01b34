"""Run a classifier over encoded texts: sorted batches, no gradients, results in input order."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from thrifty.console import passes
from thrifty.data.batching import collate, sorted_batches
from thrifty.evaluation.metrics import classification_metrics
from thrifty.evaluation.sharding import my_share, summed


def predict_logits(model, input_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device, autocast_dtype=None,
                   forward: Optional[Callable] = None, min_fill: float = 0.0,
                   lanes: Optional[Executor] = None) -> np.ndarray:
    """Logits in input order. `forward(batch, indices)` replaces `model(**batch).logits` (e.g. cached features);
    `min_fill`: see data.batching.sorted_batches. `lanes`: a thread pool that runs several passes at once (each writes
    its own rows); on a CPU, one thread per pass beats every thread on one pass for small models (inference.predictor)."""
    was_training = model.training
    model.eval()
    num_labels = model.config.num_labels
    out = np.zeros((len(input_ids), num_labels), dtype=np.float32)
    lengths = [len(ids) for ids in input_ids]

    def run_pass(idx: list[int]) -> None:
        # inference_mode and autocast hold per thread: each lane enters them itself
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=autocast_dtype,
                                                    enabled=autocast_dtype is not None):
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(input_ids, idx, pad_id).items()}
            logits = forward(batch, idx) if forward is not None else model(**batch).logits
            out[idx] = logits.float().cpu().numpy()
        shown.update(len(idx))

    mine = my_share(sorted_batches(lengths, batch_size, min_fill))  # all of them, but in a multi-process evaluation
    with passes("predict", len(input_ids), "text") as shown:
        if lanes is None or len(mine) == 1:
            for idx in mine:
                run_pass(idx)
        else:
            list(lanes.map(run_pass, mine))  # longest first, so the lanes end together on the short ones
    recompute = getattr(model, "recompute_close_calls", None)  # the int8 backend: close calls again in fp32, in
    if forward is None and recompute is not None:              # one pass sorted by length (inference.onnx_backend)
        out = recompute(out, input_ids, pad_id, batch_size, min_fill, lanes=lanes)
    if was_training:
        model.train()
    return summed(out)  # the rows other processes computed (zeros here) added in


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def evaluate_split(
    model, input_ids, labels: Sequence[int], label_names: list[str], pad_id: int, batch_size: int, device,
    autocast_dtype: Optional[torch.dtype] = None, forward: Optional[Callable] = None,
) -> dict[str, Any]:
    logits = predict_logits(model, input_ids, pad_id, batch_size, device, autocast_dtype, forward)
    labels_arr = np.asarray(labels, dtype=np.int64)
    loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels_arr)))
    return classification_metrics(labels_arr, logits.argmax(axis=1), label_names, loss=loss)
