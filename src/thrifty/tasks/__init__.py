"""Tasks: what is learned. Each module supplies data, model head, batches, loss, metrics and predictions for the
one training loop (see tasks/base.py for the protocol)."""

from __future__ import annotations

from thrifty.config import Config
from thrifty.tasks.base import Encoded, Task
from thrifty.tasks.classification import SequenceClassification
from thrifty.tasks.language_modeling import CausalLanguageModeling, MaskedLanguageModeling
from thrifty.tasks.seq2seq import SequenceToSequence
from thrifty.tasks.token_classification import TokenClassification
from thrifty.errors import ConfigError
from thrifty.traits import STRATEGIES as STRATEGY_TRAITS
from thrifty.traits import TASKS as TASK_TRAITS
from thrifty.traits import task_traits

TASKS: dict[str, type] = {task.traits.name: task for task in (
    SequenceClassification, TokenClassification, MaskedLanguageModeling, CausalLanguageModeling, SequenceToSequence)}


def register(task: type, replace: bool = False) -> type:
    """Add a task: a class with the members of the Task protocol (tasks/base.py), its `traits` row (traits.py) among
    them. From then on, in this process, configs (`task: NAME`), training, evaluate, predict and serve know it by its
    name: nothing else names a task. A process started anew (the `thrifty` command, `--processes`, `serve --workers`)
    knows only the tasks its own imports register. Usable as a class decorator; a name already taken is refused
    unless `replace`."""
    traits = task.traits
    if traits.name in TASKS and TASKS[traits.name] is not task and not replace:
        raise ConfigError(f"task {traits.name!r} is already registered ({TASKS[traits.name].__name__}); give the new "
                          "task another traits.name, or register(..., replace=True)")
    unknown = [s for s in traits.strategies if s not in STRATEGY_TRAITS]
    if unknown or not traits.strategies or not traits.metrics:
        raise ConfigError(f"task {traits.name!r}: its traits need metrics and strategies among "
                          f"{', '.join(STRATEGY_TRAITS)} (unknown: {', '.join(unknown) or 'none'})")
    TASK_TRAITS[task.traits.name] = task.traits
    TASKS[task.traits.name] = task
    return task


def get_task(name: str, config=None) -> Task:
    """The task of `task: name`, set up by the rest of `config` (a Config; None: the defaults): its strategy may
    train it its own way (fewshot: pairs), `adapt` sets the masking of masked_lm, `generate` how causal_lm and seq2seq
    write answers in evaluations."""
    task_traits(name)  # an unknown name: one line listing the known ones
    return TASKS[name].for_config(config if config is not None else Config(task=name))


__all__ = ["Encoded", "Task", "TASKS", "get_task", "register"]
