"""Lanes: forward passes run at once, each on its share of the CPU threads (inference.predictor). One check for
Predictor.load and for `thrifty serve` before its port opens, so it imports nothing heavy."""

from __future__ import annotations

from thrifty.errors import ModelError
from thrifty.traits import task_traits


def check_lanes(lanes: int, task: str, model: object, setting: str = "lanes") -> None:
    """Lanes are 1 or more, and more than 1 only for a task whose passes are independent and small (a classifier)."""
    if lanes < 1:
        raise ModelError(f"{setting}={lanes}: give 1 or more (1: one pass at a time)")
    if lanes > 1 and not task_traits(task).parallel_passes:
        raise ModelError(f"{setting}={lanes}: lanes run classification passes; {model} is {task}: leave --lanes unset "
                         "(one lane)")
