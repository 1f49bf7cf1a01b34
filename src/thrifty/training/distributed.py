"""One run over several processes (PyTorch distributed: DDP through Accelerate, gloo on CPUs, NCCL on GPUs).

The launcher contract is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT in
the environment. `thrifty train --processes N` sets them for N processes on this machine (`launch`); `torchrun` and
`accelerate launch` set them for several machines. What the processes do together lives here:

- `Processes.shares`: every step's global batch (train.batch_size examples, the same on every process: the batches
  come from the seed and the epoch) is dealt out by stride, so each process takes batch_size / N examples of similar
  lengths (the batch is sorted by length) and all take the same number of steps;
- `Processes.agree`: a stop any process decides (Ctrl-C, the budget) is every process's, at the same step;
- `Processes.gather`: objects from every process (the RNG states a checkpoint saves);
- `Processes.broadcast`: the main process's object on all (the budget planner's decision).

What a training step needs of them is one object, made by `parallelism()`: `OneProcess`, `DataParallel` (DDP) or
`Sharded` (FSDP2). It prepares the model and optimizer, shares each batch out, synchronises gradients once per step
(not at every accumulation micro-step), agrees on stop decisions, and saves and loads the (sharded) checkpoint; the
training loop (training/recipe.py) asks it and never which kind it is.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence

from thrifty.errors import ConfigError


def launched() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) without one. Inconsistent values: one line."""
    world_raw, rank_raw = os.environ.get("WORLD_SIZE"), os.environ.get("RANK")
    if world_raw is None and rank_raw is None:
        return 0, 1
    try:
        world, rank = int(world_raw or "1"), int(rank_raw or "0")
    except ValueError:
        raise ConfigError(f"the launcher's environment is not numbers: WORLD_SIZE={world_raw!r} RANK={rank_raw!r}; "
                          "start the processes with thrifty train --processes N, torchrun or accelerate launch") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"the launcher's environment is inconsistent: RANK={rank} with WORLD_SIZE={world} (RANK must be "
                          "0..WORLD_SIZE-1); start the processes with thrifty train --processes N, torchrun or accelerate launch")
    if world > 1 and not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise ConfigError(f"WORLD_SIZE={world} without MASTER_ADDR and MASTER_PORT: the processes cannot find each other; "
                          "start them with thrifty train --processes N, torchrun or accelerate launch")
    return rank, world


@dataclass
class Processes:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, message: str) -> None:
        """A line for the user, printed by the main process only (the others would repeat it)."""
        if self.main:
            print(message, flush=True)

    @property
    def machines(self) -> int:
        """Machines the processes run on (each paid for): torchrun's LOCAL_WORLD_SIZE is the processes per machine."""
        return max(1, self.world // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", self.world))))

    def shares(self, global_batch: Sequence[int]) -> list[list[int]]:
        """Every process's share of a batch, by stride (the batch is sorted by length: similar token counts)."""
        return [list(global_batch[r :: self.world]) for r in range(self.world)]

    def usable(self, batches: list[list[int]]) -> list[list[int]]:
        """A global batch smaller than the number of processes would leave one with nothing: it is left out (at most
        world - 1 examples an epoch, and only where the data does not divide)."""
        return batches if self.world == 1 else [b for b in batches if len(b) >= self.world]

    def agree(self, values: list[int]) -> list[int]:
        """The largest value of each position over all processes (a stop anywhere is a stop everywhere)."""
        if self.world == 1:
            return values
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def mean(self, tensor):
        """The mean of a tensor over the processes (the loss of a step's whole batch)."""
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        tensor = tensor.detach().clone()
        dist.all_reduce(tensor)
        return tensor / self.world

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        parts: list = [None] * self.world
        dist.all_gather_object(parts, obj)
        return parts

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        import torch.distributed as dist

        holder = [obj if self.main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


# --------------------------------------------------------------------------------------------------
# What a training step asks of the processes: one object, whichever way they share the work


class OneProcess:
    """One process: Accelerate places the model; nothing is shared, synchronised or agreed."""

    shards = False  # the model's weights are split between the processes (FSDP2)

    def __init__(self, processes: Processes, accelerator) -> None:
        self.processes = processes
        self.accelerator = accelerator

    def prepare(self, model, make_optimizer: Callable[[Any], Any], say: Callable[[str], None]) -> tuple[Any, Any]:
        """The model and its optimizer, ready to train (Accelerate wraps them: DDP under several processes)."""
        optimizer = make_optimizer(model)
        return self.accelerator.prepare(model, optimizer)

    def share(self, batch: Sequence[int]) -> list[int]:
        """This process's share of a global batch (`Processes.shares`)."""
        return self.processes.shares(batch)[self.processes.rank]

    def all_shares(self, batch: Sequence[int]) -> list[list[int]]:
        """Every process's share of a global batch: what each pass computes on (the run's padding count)."""
        return self.processes.shares(batch)

    def gradient_sync(self, model, last: bool) -> ContextManager:
        """Around one accumulation micro-step's backward: gradients are averaged over the processes once per step,
        on its `last` micro-step, not at every one."""
        return nullcontext()

    def batch_loss(self, loss, task, share: int, batch: int):
        """This process's loss on its share (`share` of the `batch` examples), weighted so that the processes'
        averaged gradients are those of the whole batch's loss."""
        return loss

    def mean(self, tensor):
        """The loss of the whole batch from every process's (every process logs the same)."""
        return self.processes.mean(tensor)

    def whole(self, norm):
        """A gradient norm as one tensor (sharded gradients give a DTensor)."""
        return norm

    def agree(self, values: list[int]) -> list[int]:
        """Stop decisions: the largest of each value over the processes (`Processes.agree`)."""
        return self.processes.agree(values)

    def evaluating(self) -> ContextManager:
        """Around an evaluation: each process evaluates its share of the passes and the figures are added up."""
        from thrifty.evaluation.sharding import sharded

        return sharded()

    def save(self, run_dir: Path, model, best: Optional[dict], optimizer, scheduler, loop: dict[str, Any]) -> None:
        """A checkpoint of the weights, the best weights so far, optimizer, schedule, loop state and random state."""
        from thrifty.runs import checkpoint as ckpt

        ckpt.save_checkpoint(run_dir, model, best, optimizer, scheduler, loop)  # with this process's random state

    def load(self, path: Path, model, optimizer) -> tuple[Optional[dict], dict[str, Any]]:
        """Weights, optimizer state and this process's random state back from the checkpoint at `path`; returns the
        best weights saved with it and the rest of what was saved (the schedule, the loop state)."""
        from thrifty.runs import checkpoint as ckpt

        trainable, best, saved = ckpt.load_checkpoint(path)
        ckpt.load_trainable_state(model, trainable)
        optimizer.load_state_dict(saved["optimizer"])
        self._restore_rng(saved["rng"])
        return best, saved

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        from thrifty.runs import checkpoint as ckpt

        # one state per process in a multi-process checkpoint (each draws its own dropout masks)
        ckpt.restore_rng(rng["ranks"][self.processes.rank] if "ranks" in rng else rng)

    def whole_weights(self, model) -> Optional[dict]:
        """The whole weights of a sharded model, gathered into the main process (a collective); None when every
        process holds all of them."""
        return None


class DataParallel(OneProcess):
    """Several processes, each with the whole model (DDP through Accelerate): gradients averaged once per step."""

    def gradient_sync(self, model, last: bool) -> ContextManager:
        return nullcontext() if last else self.accelerator.no_sync(model)

    def batch_loss(self, loss, task, share: int, batch: int):
        # DDP averages the processes' gradients: weighted so that the average is the loss of the whole batch (a mean
        # over examples; or a sum over tokens / a constant)
        world = self.processes.world
        return loss * (world if task.loss_sums else share * world / batch)

    def save(self, run_dir: Path, model, best: Optional[dict], optimizer, scheduler, loop: dict[str, Any]) -> None:
        from thrifty.runs import checkpoint as ckpt

        rngs = self.processes.gather(ckpt.rng_state())  # every process's own generator: its dropout masks resume
        if self.processes.main:  # the weights are the same in every process: the main one writes them
            ckpt.save_checkpoint(run_dir, model, best, optimizer, scheduler, loop, rng={"ranks": rngs})


class Sharded(DataParallel):
    """FSDP2: weights, gradients and optimizer state split between the processes (`shard_model`)."""

    shards = True

    def prepare(self, model, make_optimizer: Callable[[Any], Any], say: Callable[[str], None]) -> tuple[Any, Any]:
        layers = shard_model(model, self.accelerator.device)
        optimizer = make_optimizer(model)  # made on the shards
        say(f"FSDP2: weights, gradients and optimizer state sharded over {self.processes.world} processes "
            f"({layers} layers, then the rest); each gathers one layer's weights at a time")
        return model, optimizer

    @contextmanager
    def gradient_sync(self, model, last: bool) -> Iterator[None]:
        model.set_requires_gradient_sync(last)
        yield

    def whole(self, norm):
        if hasattr(norm, "full_tensor"):  # the sharded gradients' norm as a DTensor (older Accelerate; newer
            return norm.full_tensor()  # gathers it itself): the whole
        return norm

    def evaluating(self) -> ContextManager:
        # every pass runs in every process (each forward gathers the weights: the processes must run in step)
        return nullcontext()

    def save(self, run_dir: Path, model, best: Optional[dict], optimizer, scheduler, loop: dict[str, Any]) -> None:
        from thrifty.runs import checkpoint as ckpt

        rngs = self.processes.gather(ckpt.rng_state())
        p = self.processes  # every process writes its shards, the main one the rest
        ckpt.save_sharded_checkpoint(run_dir, model, best, optimizer, scheduler, loop, {"ranks": rngs}, rank=p.rank,
                                     world=p.world, barrier=p.barrier)

    def load(self, path: Path, model, optimizer) -> tuple[Optional[dict], dict[str, Any]]:
        from thrifty.runs import checkpoint as ckpt

        # each process reads its own shard files
        best, saved = ckpt.load_sharded_checkpoint(path, model, optimizer, rank=self.processes.rank,
                                                   world=self.processes.world)
        self._restore_rng(saved["rng"])
        return best, saved

    def whole_weights(self, model) -> Optional[dict]:
        return full_state(model)


def parallelism(processes: Processes, fsdp: bool, accelerator) -> OneProcess:
    """How these processes train together: sharded (FSDP2) when train.fsdp asks and there are several of them."""
    if processes.world == 1:
        return OneProcess(processes, accelerator)
    return Sharded(processes, accelerator) if fsdp else DataParallel(processes, accelerator)


# --------------------------------------------------------------------------------------------------
# FSDP2: weights, gradients and optimizer state sharded between the processes


def shard_model(model, device) -> int:
    """FSDP2 (`fully_shard`, PyTorch's own) on each transformer layer (the model's `_no_split_modules`), then on the
    whole model: each process keeps 1/N of every tensor and gathers a layer's weights only while it runs. In place
    (the model's class becomes an FSDP one). Accelerate shards only on GPUs, so thrifty calls PyTorch directly, the
    same on CPUs (gloo) and GPUs (NCCL). Returns the number of layers sharded."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from thrifty.cost.memory import repeated_blocks

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    layers = repeated_blocks(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return len(layers)


def full_state(model) -> dict:
    """The whole weights of a sharded model, gathered into the main process's memory (on the others: empty), for the
    one consolidated model saved at the end. A collective: every process calls it at the same point."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# --------------------------------------------------------------------------------------------------
# thrifty train --processes N: N processes on this machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_processes(processes: int, gpus: int, cores: int) -> None:
    if processes < 1:
        raise ConfigError(f"--processes {processes}: give 1 or more")
    if gpus and processes > gpus:
        raise ConfigError(f"--processes {processes} but this machine has {gpus} GPU(s): one process per GPU; give "
                          f"--processes {gpus} or fewer (several machines: torchrun, see docs/distributed.md)")
    if not gpus and processes > cores:
        raise ConfigError(f"--processes {processes} but this machine has {cores} CPU cores: each process needs one; give "
                          f"--processes {cores} or fewer")


def launch(argv: list[str], processes: int, *, grace_seconds: float = 30.0) -> int:
    """Run `python -m thrifty ARGV` as `processes` ranks of one run on this machine (torchrun's environment; the
    threads split between them). Ctrl-C from the terminal reaches every rank, which stop together at the next step
    with a checkpoint; a rank that dies (kill -9) leaves the others stuck in a collective: they are stopped after
    `grace_seconds`. Returns rank 0's exit code (or the first failure's)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = os.cpu_count() or 1
    check_processes(processes, gpus, cores)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // processes))
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes), "OMP_NUM_THREADS": threads, "TORCHELASTIC_RUN_ID": "thrifty"}
    children = [subprocess.Popen([sys.executable, "-m", "thrifty", *argv],
                                 env={**base, "RANK": str(r), "LOCAL_RANK": str(r), "GROUP_RANK": "0"})
                for r in range(processes)]
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # the ranks got it too: they stop, this waits for them
    term = signal.signal(signal.SIGTERM, lambda *_: [c.send_signal(signal.SIGTERM) for c in children if c.poll() is None])
    try:
        failed_at: Optional[float] = None
        while any(c.poll() is None for c in children):
            if failed_at is None and any(c.poll() not in (None, 0) for c in children):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > grace_seconds:
                for c in children:
                    if c.poll() is None:
                        c.kill()  # stuck waiting for the dead rank in a collective
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, term)
    codes = [c.returncode for c in children]
    failures = [c for c in codes if c != 0]
    if codes[0] == 0 and not failures:
        return 0
    dead = [f"rank {r} ({'killed by signal ' + str(-c) if c < 0 else 'exit ' + str(c)})" for r, c in enumerate(codes) if c != 0]
    print(f"thrifty train --processes {processes}: {', '.join(dead)}", file=sys.stderr)
    return codes[0] if codes[0] > 0 else next((c for c in codes if c > 0), 1)
