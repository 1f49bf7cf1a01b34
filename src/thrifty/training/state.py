"""The loop state: where training is and what it has seen. It is exactly what a checkpoint saves as `loop`.

Plain numbers, strings, lists and dicts only: a checkpoint stores it with the optimiser state and reads it
back with ``torch.load(weights_only=True)``, which unpickles no code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class LoopState:
    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch done: where a resumed run continues
    best_metric: Optional[float] = None
    best_step: Optional[int] = None
    best_metrics: Optional[dict[str, Any]] = None  # the validation metrics of the best weights
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per validation
    tokens_seen: int = 0  # real (unpadded) tokens trained on
    padded_tokens_seen: int = 0
    examples_seen: int = 0
    step_seconds: float = 0.0  # time in training steps only
    eval_seconds: float = 0.0
    loop_wall_seconds: float = 0.0  # wall time since the first step, checkpoints and logging included (all sessions)
    last_eval_seconds: Optional[float] = None
    stop_reason: Optional[str] = None  # set once, by the StopController
    budget_spent_seconds: float = 0.0  # written at each checkpoint: what this and earlier sessions spent
    budget_flops: float = 0.0
    plan: Optional[dict[str, Any]] = None  # what the budget planner decided before step 1
    answers_per_evaluation: Optional[int] = None  # answers each validation writes (fixed by the first; tasks.base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "LoopState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})
