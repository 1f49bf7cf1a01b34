"""When a run evaluates: one rule shared by the training loop, the estimate and the budget planner."""

from __future__ import annotations

import math


def evaluation_steps(total_steps: int, steps_per_epoch: int, every: int = 0, per_epoch: int = 1) -> list[int]:
    """Optimizer steps after which validation runs: every `every` steps, or `per_epoch` times per epoch at
    evenly spaced steps (the last one at the epoch's end); the last step of the run always."""
    if total_steps <= 0:
        return []
    if every:
        steps = set(range(every, total_steps + 1, every))
    else:
        steps = set()
        for epoch in range(math.ceil(total_steps / steps_per_epoch)):
            for j in range(1, per_epoch + 1):
                step = epoch * steps_per_epoch + math.ceil(j * steps_per_epoch / per_epoch)
                if step <= total_steps:
                    steps.add(step)
    steps.add(total_steps)
    return sorted(steps)
