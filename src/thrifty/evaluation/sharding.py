"""Evaluation split over the processes of a multi-process run: each runs its share of the passes, the sums are shared.

Inside `sharded()` (entered by every process of a run at the same point: the loop's validations, the final test),
`my_share(passes)` keeps this process's passes and `summed(x)` adds up what each process computed (rows a process did
not compute are zeros, so the sum is the gather). Outside it, or in a single process, both do nothing: prediction and
`thrifty evaluate` never talk to other processes.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")
_ACTIVE = False


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if _ACTIVE and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def sharded() -> Iterator[None]:
    global _ACTIVE
    before, _ACTIVE = _ACTIVE, True
    try:
        yield
    finally:
        _ACTIVE = before


def my_share(items: Sequence[T]) -> list[T]:
    rank, world = _world()
    return list(items[rank::world]) if world > 1 else list(items)


def summed(values):
    """The elementwise sum over the processes: a numpy array, a float or an int (same type back)."""
    rank, world = _world()
    if world == 1:
        return values
    import torch
    import torch.distributed as dist

    if isinstance(values, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        dist.all_reduce(tensor)
        return tensor.numpy().astype(values.dtype)
    tensor = torch.tensor([float(values)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return type(values)(tensor.item())


def sharing_processes() -> int:
    """How many processes share the current evaluation's passes (1 outside `sharded()` or in a single process)."""
    return _world()[1]


def any_process(flag: bool) -> bool:
    """True in every process when it is true in one: a decision the processes must take together (they run a
    loop of collectives, or of sharded forwards, in step). Inside or outside `sharded()`: a sharded model (FSDP) runs
    every pass in every process and must stop at the same pass too."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    import torch

    tensor = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gathered(items: list) -> list:
    """Per-row objects (ragged arrays): each process fills its rows and leaves None elsewhere; every process gets all."""
    rank, world = _world()
    if world == 1:
        return items
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, items)
    return [next((p[i] for p in parts if p[i] is not None), None) for i in range(len(items))]
