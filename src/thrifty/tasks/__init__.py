"""Tasks: what is learned. Each module supplies data, model head, batches, loss, metrics and predictions for the
one training loop (see tasks/base.py for the protocol)."""

from __future__ import annotations

from thrifty.config import Config
from thrifty.tasks.base import Encoded, Task
from thrifty.tasks.classification import SequenceClassification
from thrifty.tasks.language_modeling import CausalLanguageModeling, MaskedLanguageModeling
from thrifty.tasks.seq2seq import SequenceToSequence
from thrifty.tasks.token_classification import TokenClassification
from thrifty.traits import TASKS as TASK_TRAITS
from thrifty.traits import task_traits

TASKS: dict[str, type] = {task.traits.name: task for task in (
    SequenceClassification, TokenClassification, MaskedLanguageModeling, CausalLanguageModeling, SequenceToSequence)}


def register(task: type) -> type:
    """Add a task: a class with the members of the Task protocol (tasks/base.py), its `traits` row (traits.py) among
    them. From then on configs (`task: NAME`), the CLI, training, evaluate, predict and serve know it by its name:
    nothing else names a task. Usable as a class decorator."""
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
