"""Calibrations kept on disk, so that a repeated estimate or budgeted run does not time steps again.

A CPU estimate times a few real training steps and a forward pass (cost/estimate.py `_calibrate`, 5-20 s on
2 cores). Its result, seconds per FLOP, depends on the machine, the thread count, torch, the model, what the
strategy trains, the task's head, the precision the run computes in (bf16 autocast or fp32) and the batch shape — and on nothing else a config changes (epochs, data
size, learning rate). So it is kept under ``~/.cache/thrifty/calibration/`` keyed by exactly those, and reused
when they match: a budgeted run then starts training within a few seconds of loading the model, and the
seconds it saves stay in the budget. ``--cost.reuse_calibration false`` times the steps again (and replaces
the kept one), e.g. after the machine's load changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from thrifty.models.precision import cpu_name  # noqa: F401 - benchmarks and the key read it here

CALIBRATION_FORMAT = 3  # bump when _calibrate measures differently: older entries are then never matched

_SHAPE_BUCKET = 16  # widths are rounded up to this many tokens: the FLOP rate barely moves within a bucket


def calibration_key(model, *, task: str, strategy: str, trainable_parameters: int, batch_size: int,
                    eval_batch_size: int, max_width: int, cached_layers: int, pruned: bool,
                    max_grad_norm: float, precision: str = "fp32", fast_dropout: bool = False,
                    kept_memory: int = 0) -> dict[str, Any]:
    """What a calibration depends on, as a readable dict (stored beside it) whose hash names the file."""
    import torch

    config_json = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else repr(model)
    return {
        "format": CALIBRATION_FORMAT, "cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "model": hashlib.sha256(config_json.encode()).hexdigest()[:16],
        "model_type": getattr(getattr(model, "config", None), "model_type", None), "task": task,
        "strategy": strategy, "trainable_parameters": int(trainable_parameters), "batch_size": batch_size,
        "eval_batch_size": eval_batch_size, "width_bucket": -(-max_width // _SHAPE_BUCKET) * _SHAPE_BUCKET,
        "cached_layers": cached_layers, "pruned_last_layer": bool(pruned), "clips_gradients": max_grad_norm > 0,
        "precision": precision, "fast_dropout": bool(fast_dropout),
        "kept_memory": kept_memory,  # glibc's mmap threshold the steps run under (models/allocator.py)
    }


def _path(key: dict[str, Any]) -> Path:
    from thrifty.models.loading import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "calibration" / f"{digest}.json"


def load_calibration(key: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The kept calibration for `key`, marked ``cached``; None when there is none (or it cannot be read)."""
    path = _path(key)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("key") != key or not isinstance(saved.get("calibration"), dict):
        return None
    return {**saved["calibration"], "cached": True, "measured_at": saved.get("measured_at")}


def save_calibration(key: dict[str, Any], calibration: dict[str, Any]) -> None:
    """Kept atomically (runs.run_dir.atomic_write_text), so that two processes never read half a file. Failing to
    write a cache entry (a read-only home) costs only the next calibration, so it is not an error."""
    from thrifty.errors import RunDirError
    from thrifty.runs.run_dir import atomic_write_text

    entry = {"key": key, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "calibration": {k: v for k, v in calibration.items() if k != "cached"}}
    try:
        atomic_write_text(_path(key), json.dumps(entry, indent=1))
    except (RunDirError, OSError):
        pass
