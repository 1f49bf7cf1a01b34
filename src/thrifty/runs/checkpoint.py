"""Resumable checkpoints: trainable weights, best weights, optimizer, scheduler, RNG and loop position.

Only trainable parameters are stored (frozen ones never change and are reloaded from the base model), in
safetensors; the optimizer/scheduler/RNG state is a plain tensor dictionary read back with
``torch.load(weights_only=True)``, so loading a checkpoint never unpickles code. A checkpoint is written
to a temporary folder and swapped in with renames, so a crash (even ``kill -9``) mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from thrifty.runs.run_dir import writing

CHECKPOINT_DIR = "checkpoint"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise RuntimeError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].device))


def rng_state() -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def save_checkpoint(
    run_dir: Path, model: torch.nn.Module, best: Optional[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer, scheduler, loop_state: dict[str, Any], rng: Optional[dict[str, Any]] = None,
    trainable: Optional[dict[str, torch.Tensor]] = None, optimizer_state: Optional[dict[str, Any]] = None,
) -> None:
    """`rng`: the generators to save (a multi-process run: {"ranks": [one per process]}); default this process's.
    `trainable`, `optimizer_state`: already gathered (a sharded model's, FSDP); default read from model and optimizer."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / (CHECKPOINT_DIR + ".tmp")
    old = run_dir / (CHECKPOINT_DIR + ".old")
    with writing(run_dir, "a checkpoint"):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            save_file(trainable if trainable is not None else trainable_state(model), str(tmp / "trainable.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            rng = rng if rng is not None else rng_state()
            torch.save({"optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                        "loop": loop_state}, tmp / "state.pt")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-written checkpoint must not linger
            raise
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(run_dir: Path) -> Optional[Path]:
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):  # .old survives a crash between the two renames
        path = run_dir / name
        if (path / "state.pt").exists() and (path / "trainable.safetensors").exists():
            return path
    return None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], Optional[dict[str, torch.Tensor]], dict[str, Any]]:
    trainable = load_file(str(path / "trainable.safetensors"))
    best = load_file(str(path / "best.safetensors")) if (path / "best.safetensors").exists() else None
    state = torch.load(path / "state.pt", weights_only=True)
    return trainable, best, state


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
