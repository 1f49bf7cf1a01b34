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
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

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
