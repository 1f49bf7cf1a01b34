"""Tasks: what is learned. Each module supplies data, model head, batches, loss, metrics and predictions for the
one training loop (see tasks/base.py for the protocol)."""

from __future__ import annotations

from thrifty.errors import ConfigError
from thrifty.tasks.base import Encoded, Task
from thrifty.tasks.classification import SequenceClassification
from thrifty.tasks.token_classification import TokenClassification

TASKS: dict[str, type] = {"classification": SequenceClassification, "token_classification": TokenClassification}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["Encoded", "Task", "TASKS", "get_task"]
