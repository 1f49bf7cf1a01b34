"""The parallelism a training step asks (training/distributed.py), without starting processes: which kind a run gets,
and what each does with a step's share, loss and gradient sync."""

import contextlib
from types import SimpleNamespace

import torch

from thrifty.training.distributed import DataParallel, OneProcess, Processes, Sharded, parallelism


class FakeAccelerator:
    def __init__(self):
        self.no_sync_calls = 0

    @contextlib.contextmanager
    def no_sync(self, model):
        self.no_sync_calls += 1
        yield


def test_the_kind_follows_the_processes_and_train_fsdp():
    assert type(parallelism(Processes(0, 1), True, None)) is OneProcess  # one process: nothing to shard
    assert type(parallelism(Processes(0, 2), False, None)) is DataParallel
    assert type(parallelism(Processes(1, 2), True, None)) is Sharded
    assert Sharded.shards and not DataParallel.shards and not OneProcess.shards


def test_one_process_takes_the_whole_batch_and_leaves_the_loss_and_gradients_alone():
    accelerator = FakeAccelerator()
    one = OneProcess(Processes(0, 1), accelerator)
    assert one.share([4, 2, 7]) == [4, 2, 7]
    loss = torch.tensor(0.5)
    assert one.batch_loss(loss, SimpleNamespace(loss_sums=False), 3, 3) is loss
    with one.gradient_sync(None, last=False):
        pass
    assert accelerator.no_sync_calls == 0 and one.agree([0, 1]) == [0, 1]


def test_ddp_shares_by_stride_weights_the_loss_and_syncs_on_the_last_micro_step_only():
    accelerator = FakeAccelerator()
    ddp = DataParallel(Processes(1, 2), accelerator)
    assert ddp.share([0, 1, 2, 3, 4]) == [1, 3]
    mean_task, sum_task = SimpleNamespace(loss_sums=False), SimpleNamespace(loss_sums=True)
    assert ddp.batch_loss(torch.tensor(1.0), mean_task, 2, 5).item() == torch.tensor(2 * 2 / 5).item()
    assert ddp.batch_loss(torch.tensor(1.0), sum_task, 2, 5).item() == 2.0
    for micro in range(3):
        with ddp.gradient_sync(None, last=micro == 2):
            pass
    assert accelerator.no_sync_calls == 2


def test_fsdp_turns_gradient_sync_on_the_model_itself():
    seen = []
    model = SimpleNamespace(set_requires_gradient_sync=seen.append)
    sharded = Sharded(Processes(0, 2), FakeAccelerator())
    for micro in range(2):
        with sharded.gradient_sync(model, last=micro == 1):
            pass
    assert seen == [False, True]
