"""Resumable checkpoints: trainable weights, best weights, optimizer, scheduler, RNG and loop position.

A model sharded between processes (FSDP) saves one file of shards per process and kind (`save_sharded_checkpoint`):
nothing is gathered into one process's memory.

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


def _local(tensor: torch.Tensor) -> torch.Tensor:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor  # a DTensor: this process's shard
    return local.detach().to("cpu", copy=True).contiguous()


def _resharded(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP keeps the root's weights gathered after a forward pass (they are needed again for backward), registered in
    place of its shards: put the shards back, so that the parameters are the ones the optimizer holds."""
    for module in model.modules():
        if hasattr(module, "reshard") and hasattr(module, "unshard"):  # an FSDP module
            module.reshard()
    return model


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights, copied to the CPU; of a model sharded between processes (FSDP), this process's shards
    of them (no communication)."""
    return {n: _local(p) for n, p in _resharded(model).named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """`trainable_state`'s tensors back into the model (a sharded model: each into this process's shard)."""
    params = dict(_resharded(model).named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise RuntimeError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {missing[0]}")
    with torch.no_grad():
        for name, tensor in state.items():
            target = params[name].to_local() if hasattr(params[name], "to_local") else params[name]
            target.copy_(tensor.to(target.device))


def rng_state() -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def save_checkpoint(
    run_dir: Path, model: torch.nn.Module, best: Optional[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer, scheduler, loop_state: dict[str, Any], rng: Optional[dict[str, Any]] = None,
) -> None:
    """`rng`: the generators to save (a multi-process run: {"ranks": [one per process]}); default this process's."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / (CHECKPOINT_DIR + ".tmp")
    old = run_dir / (CHECKPOINT_DIR + ".old")
    with writing(run_dir, "a checkpoint"):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            rng = rng if rng is not None else rng_state()
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                        "loop": loop_state}, tmp / "state.pt")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half-written checkpoint must not linger
            raise
        _swap_in(tmp, final, old)


def _swap_in(tmp: Path, final: Path, old: Path) -> None:
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


# ---- a sharded model (FSDP): every process saves its own shards, the main one the rest


def shard_file(kind: str, rank: int, world: int) -> str:
    return f"{kind}.rank{rank}-of-{world}.safetensors"


def _local_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in _resharded(model).named_parameters()}
    return {f"{names[id(p)]}::{key}": _local(value) for p, st in optimizer.state.items()
            for key, value in st.items() if torch.is_tensor(value)}


def _load_local_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                                saved: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    from torch.distributed.tensor import DTensor

    for name, p in _resharded(model).named_parameters():
        state = {}
        for key in (k for k in saved if k.split("::", 1)[0] == name):
            value, what = saved[key], key.split("::", 1)[1]
            if isinstance(p, DTensor) and value.dim() > 0:  # a moment: this process's shard of a sharded tensor
                value = DTensor.from_local(value.to(p.to_local().device), p.device_mesh, p.placements, run_check=False,
                                           shape=p.shape, stride=p.stride())
            state[what] = value
        if state:
            optimizer.state[p] = state
    for group, kept in zip(optimizer.param_groups, groups):  # the learning rate where the schedule left it, etc.
        group.update({k: v for k, v in kept.items() if k != "params"})


def save_sharded_checkpoint(run_dir: Path, model: torch.nn.Module, best: Optional[dict[str, torch.Tensor]],
                            optimizer: torch.optim.Optimizer, scheduler, loop_state: dict[str, Any],
                            rng: dict[str, Any], *, rank: int, world: int, barrier) -> None:
    """Every process writes its shards of the weights, the best weights and the optimizer state into the new folder
    (nothing is gathered: a model too big for one process's memory saves as well); the main process writes the rest
    and swaps the folder in, as `save_checkpoint` does. Called by every process at the same point."""
    final, tmp, old = run_dir / CHECKPOINT_DIR, run_dir / (CHECKPOINT_DIR + ".tmp"), run_dir / (CHECKPOINT_DIR + ".old")
    with writing(run_dir, "a checkpoint"):
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        barrier()
        save_file(trainable_state(model), str(tmp / shard_file("trainable", rank, world)))
        save_file(_local_optimizer_state(model, optimizer), str(tmp / shard_file("optimizer", rank, world)))
        if best is not None:
            save_file(best, str(tmp / shard_file("best", rank, world)))
        barrier()  # every shard is on disk before the folder becomes the checkpoint
        if rank == 0:
            groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.state_dict()["param_groups"]]
            torch.save({"optimizer_groups": groups, "scheduler": scheduler.state_dict(), "rng": rng, "loop": loop_state,
                        "sharded": world}, tmp / "state.pt")
            _swap_in(tmp, final, old)


def load_sharded_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, rank: int,
                            world: int) -> tuple[Optional[dict[str, torch.Tensor]], dict[str, Any]]:
    """This process's shards back into the model and optimizer; returns its best-weight shards and the saved state."""
    state = torch.load(path / "state.pt", weights_only=True)
    load_trainable_state(model, load_file(str(path / shard_file("trainable", rank, world))))
    _load_local_optimizer_state(model, optimizer, load_file(str(path / shard_file("optimizer", rank, world))),
                                state["optimizer_groups"])
    best = path / shard_file("best", rank, world)
    return (load_file(str(best)) if best.exists() else None), state


def find_checkpoint(run_dir: Path) -> Optional[Path]:
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):  # .old survives a crash between the two renames
        path = run_dir / name
        if (path / "state.pt").exists() and ((path / "trainable.safetensors").exists()
                                             or any(path.glob("trainable.rank0-of-*.safetensors"))):
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
