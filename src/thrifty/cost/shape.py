"""The measured shape of a run: what the estimate and the budget planner read of it, measured once from the prepared
run (`measure_shape`), so that planning's candidates (fewer epochs, a shorter max_length) are shape transformations
rather than new runs: choosing a shorter max_length does not tokenise again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from thrifty.config import Config
from thrifty.cost.flops import FlopModel
from thrifty.cost.memory import TrainingMemory
from thrifty.traits import strategy_traits


@dataclass(frozen=True)
class RunShape:
    """What is measured, once, from the prepared run (config, tokens, model with its strategy):

    - token lengths: of each training example as trained (at `max_length`), of the validation, test and (few-shot)
      unlabelled texts as evaluated, and, where the task plainly truncates, of the training and evaluation texts
      before truncation (`*_full`), from which `with_max_length` counts the lengths at another max_length as
      min(length, n) without the tokenizer;
    - the training batches of one epoch (example indices, as the training loop draws them);
    - the settings that count steps and evaluations (batch sizes, epochs, max_steps, gradient accumulation, the
      evaluation schedule), the precision and the processes;
    - of the model: total and trainable parameters, layers, the frozen layers a cache skips, the FLOP model
      (cost/flops.py) and the training memory of the widest batch.

    What is not measured here: the seconds per FLOP. On a CPU, the estimate still times a few real training batches
    and a forward pass with the model (cost/estimate.py's calibration, kept per machine and batch shape), once per
    plan; the planner's candidates reuse it. A new width's activation memory is measured on a meta-device copy of
    the model (`memory_probe`), the one thing `with_max_length` still asks of the model.
    """

    model_name: str
    strategy_name: str
    total_parameters: int
    trainable_parameters: int
    layers: int  # the model's hidden layers (12 where it does not say)
    cached_layers: int  # bottom layers the training loop computes once and then skips
    flops: FlopModel
    max_length: int
    train_lengths: tuple[int, ...]  # each training example as trained
    val_lengths: tuple[int, ...]
    test_lengths: tuple[int, ...]  # empty: no test split
    unlabelled_lengths: tuple[int, ...]  # few-shot self-training's unlabelled texts
    batches: tuple[tuple[int, ...], ...]  # the training batches of one epoch
    batch_size: int
    eval_batch_size: int
    epochs: int
    max_steps: Optional[int]
    gradient_accumulation_steps: int
    eval_every_steps: Optional[int]
    evaluations_per_epoch: Optional[int]
    embeds_train_before_evaluation: bool  # few-shot: each evaluation first embeds the training texts
    processes: int
    fsdp: bool
    shards: bool  # the strategy may be sharded (FSDP)
    precision: str
    memory: TrainingMemory  # of the widest training batch
    seed: int = 0
    group_by_length: bool = False
    # untruncated lengths, set where the task truncates plainly (min(length, max_length)) and batches by length only;
    # None: another max_length needs the texts tokenised again (windows, packing, class-balanced batches)
    train_full: Optional[tuple[int, ...]] = None
    val_full: Optional[tuple[int, ...]] = None  # None with train_full set: evaluation is not cut at max_length
    test_full: Optional[tuple[int, ...]] = None
    memory_probe: Optional[Callable[..., TrainingMemory]] = field(default=None, compare=False, repr=False)

    @property
    def widths(self) -> list[tuple[int, int]]:
        """(examples, padded length) of each training batch."""
        return [(len(idx), max(self.train_lengths[i] for i in idx)) for idx in self.batches]

    @property
    def truncates(self) -> bool:
        """Whether `with_max_length` can count another max_length without tokenising."""
        return self.train_full is not None

    def with_epochs(self, epochs: int) -> RunShape:
        return dataclasses.replace(self, epochs=epochs)

    def with_max_length(self, n: int) -> RunShape:
        """The same run with texts cut at `n` tokens: the lengths the tokenizer would give, min(length, n), and the
        batches the training loop would draw from them."""
        from thrifty.data.batching import training_batches

        if self.train_full is None:
            raise ValueError("this task's texts are not plainly truncated: tokenise them again at the new max_length")
        train = tuple(min(length, n) for length in self.train_full)
        batches = tuple(tuple(b) for b in training_batches(train, self.batch_size, self.seed, 0, self.group_by_length))
        width = max(max(train[i] for i in idx) for idx in batches)
        memory = self.memory_probe(self.batch_size, width, self.processes, self.fsdp and self.processes > 1, True)
        cut = (lambda full, kept: kept if full is None else tuple(min(length, n) for length in full))
        return dataclasses.replace(self, max_length=n, train_lengths=train, batches=batches, memory=memory,
                                   val_lengths=cut(self.val_full, self.val_lengths),
                                   test_lengths=cut(self.test_full, self.test_lengths))


@contextlib.contextmanager
def last_layer_pruned(model, prune: bool) -> Iterator[bool]:
    """The last layer computing the first token only (models/first_token.py) while inside, where `prune` asks."""
    from thrifty.models import first_token

    pruned = prune and first_token.enable(model)
    try:
        yield pruned
    finally:
        if pruned:
            first_token.disable(model)


def prunes(config: Config, inputs) -> bool:
    return bool(config.train.prune_last_layer and inputs.task.prunes_last_layer)


def measure_shape(config: Config, inputs, processes: int = 1) -> RunShape:
    """The shape of the prepared run `inputs` under `config` (its FLOPs and memory as the estimate counts them:
    with the last layer pruned where the run prunes it)."""
    with last_layer_pruned(inputs.model, prunes(config, inputs)):
        return measured(config, inputs, processes)


def measured(config: Config, inputs, processes: int) -> RunShape:
    """`measure_shape` for a model already pruned as the run prunes it."""
    from thrifty.cost.flops import flop_model
    from thrifty.cost.memory import training_memory
    from thrifty.models.feature_cache import FrozenFeatureCache

    tc, model, task, strategy = config.train, inputs.model, inputs.task, inputs.strategy
    train = tuple(len(x) for x in inputs.train_ids)
    drawn = task.training_batches(inputs.train, tc.batch_size, tc.seed, 0, tc.group_by_length)
    batches = tuple(tuple(b) for b in drawn)
    cached = FrozenFeatureCache.layers_to_cache(
        config.strategy.name, tc.cache_frozen_layers and task.caches_frozen_layers, strategy.details, model)
    width = max(max(train[i] for i in idx) for idx in batches)
    sharded = tc.fsdp and processes > 1
    shape = RunShape(
        model_name=config.model.name, strategy_name=strategy.name, total_parameters=strategy.total_parameters,
        trainable_parameters=strategy.trainable_parameters,
        layers=getattr(model.config, "num_hidden_layers", 12), cached_layers=cached,
        flops=flop_model(model, frozen_layers=cached), max_length=inputs.max_length, train_lengths=train,
        val_lengths=tuple(len(x) for x in inputs.val_ids), test_lengths=tuple(len(x) for x in inputs.test_ids or []),
        unlabelled_lengths=tuple(len(x) for x in inputs.train.extra.get("unlabelled") or []), batches=batches,
        batch_size=tc.batch_size, eval_batch_size=tc.eval_batch_size, epochs=tc.epochs, max_steps=tc.max_steps,
        gradient_accumulation_steps=tc.gradient_accumulation_steps, eval_every_steps=tc.eval_every_steps,
        evaluations_per_epoch=tc.evaluations_per_epoch,
        embeds_train_before_evaluation=bool(task.embeds_train_before_evaluation), processes=processes,
        fsdp=bool(tc.fsdp), shards=strategy_traits(config.strategy.name).shards, precision=_precision(config),
        memory=training_memory(model, tc.batch_size, width, processes=processes, sharded=sharded),
        seed=tc.seed, group_by_length=bool(tc.group_by_length),
        memory_probe=_MemoryProbe(model, prunes(config, inputs)),
    )
    return dataclasses.replace(shape, **_untruncated(inputs, shape))


# what an encoded split may carry besides its ids for min(length, n) to count it at another n: per-token word
# alignment and counts (token classification); anything else (windows, packing, anchors) is tokenised again
_PER_TOKEN = frozenset({"words_without_tokens", "words_truncated", "word_index"})


def _precision(config: Config) -> str:
    """What the run will compute in here (models/precision.py): bf16, fp16 or fp32."""
    import torch

    from thrifty.models.precision import training_precision

    from thrifty.errors import ConfigError

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return training_precision(config.train.precision, device, config.task).name
    except ConfigError:  # a precision this machine cannot run, estimated for another machine (cost.hardware)
        return str(config.train.precision)


def _untruncated(inputs, shape: RunShape) -> dict[str, Any]:
    """The untruncated lengths, where they give exactly today's lengths as min(length, max_length) and the batches
    depend on the lengths alone (data.batching.training_batches); else nothing (the planner tokenises again)."""
    from thrifty.data.batching import training_batches

    task, lengths, n = inputs.task, inputs.lengths, shape.max_length
    if lengths is None or task.windows_long_texts or shape.unlabelled_lengths or set(inputs.train.extra) - _PER_TOKEN:
        return {}
    cut = (lambda full: tuple(min(int(length), n) for length in full))
    full = {role: tuple(int(length) for length in lengths[role]) for role in lengths}
    if cut(full["train"]) != shape.train_lengths or tuple(map(tuple, training_batches(
            shape.train_lengths, shape.batch_size, shape.seed, 0, shape.group_by_length))) != shape.batches:
        return {}
    if task.evaluates_full_length:  # only training is cut to another length
        return {"train_full": full["train"]}
    if cut(full["validation"]) != shape.val_lengths or ("test" in full and cut(full["test"]) != shape.test_lengths):
        return {}
    return {"train_full": full["train"], "val_full": full["validation"], "test_full": full.get("test", ())}


@dataclass(frozen=True)
class _MemoryProbe:
    """Training memory at a batch shape (cost/memory.py), on a meta-device copy of the model."""

    model: Any
    prune: bool

    def __call__(self, batch_size: int, length: int, processes: int, sharded: bool, pruned: bool) -> TrainingMemory:
        from thrifty.cost.memory import training_memory

        with last_layer_pruned(self.model, self.prune and pruned):
            return training_memory(self.model, batch_size, length, processes=processes, sharded=sharded)
