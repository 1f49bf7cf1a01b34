"""Every reason a run stops, decided in one place.

Ctrl-C or SIGTERM (at the next step boundary, with a checkpoint), the budget (before a step that would leave
too little to evaluate, test and save), early stopping, a target metric reached, a trial pruned by a search,
max_steps, or the last epoch done. The loop asks :class:`StopController` before each step and after each step
and evaluation; the controller alone writes ``state.stop_reason``. A multi-process run agrees on the decision
here (one all-reduce of the reason, through the `agree` it is made with), without touching the loop.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from thrifty.cost.budget import BudgetTracker
from thrifty.evaluation.metrics import is_better
from thrifty.training.state import LoopState


# Every reason, in the order a multi-process run settles a disagreement by (the later wins; in one process the first
# reason set is kept, as always)
STOP_REASONS = ("completed", "max_steps", "target_reached", "early_stopping", "pruned", "budget")


def _no_flops(group: list) -> float:
    return 0.0


@dataclass(frozen=True)
class WorkCosts:
    """What the budget check needs to know of the run's work, known once the model and data are (recipe.py)."""

    save_reserve: float = 0.0  # seconds to keep for saving the model
    eval_flops: float = 0.0  # FLOPs of one evaluation (counted under a FLOP limit only)
    step_flops: Callable[[list], float] = _no_flops  # FLOPs of a step's group of micro-batches


def _each_alone(values: list[int]) -> list[int]:
    return values


class StopController:
    def __init__(self, train_config, metric: str, tracker: BudgetTracker, budget_active: bool,
                 on_evaluation: Optional[Callable[[int, dict[str, Any]], bool]] = None, *,
                 costs: WorkCosts = WorkCosts(), agree: Callable[[list[int]], list[int]] = _each_alone) -> None:
        """`agree`: over several processes, the largest of each value over all of them (training/distributed.py), so
        that a stop any process decides (its Ctrl-C, its clock past the budget) becomes every process's, at the same
        step; one process: the values as they are."""
        self.tc = train_config
        self.metric = metric
        self.tracker = tracker
        self.budget_active = budget_active
        self.on_evaluation = on_evaluation
        self.user_requested = False  # Ctrl-C / SIGTERM
        self._previous: dict[int, Any] = {}
        self.recent_step_seconds: list[float] = []  # the logger's timings of the latest steps
        self.save_reserve = costs.save_reserve
        self.eval_flops = costs.eval_flops
        self.step_flops = costs.step_flops
        self.agree = agree

    # ---- signals: Ctrl-C sets a flag; a second Ctrl-C aborts at once.
    def _handle(self, signum, frame) -> None:
        if self.user_requested:
            raise KeyboardInterrupt
        self.user_requested = True
        print("\nstopping at the next step boundary (Ctrl-C again to abort at once) ...", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopController":
        with contextlib.suppress(ValueError):  # signals can only be set from the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    # ---- the decisions
    def _stop(self, state: LoopState, reason: str) -> None:
        if state.stop_reason is None:
            state.stop_reason = reason

    def before_step(self, state: LoopState, group: list) -> bool:
        """Would this step leave too little budget to evaluate the current weights, test and save? Then stop."""
        if not self.budget_active:
            return False
        plan = state.plan or {}
        guess = max(self.recent_step_seconds[-5:]) if self.recent_step_seconds else plan.get("seconds_per_step", 0.0)
        eval_guess = state.last_eval_seconds or plan.get("seconds_per_evaluation", 0.0)
        reserve = eval_guess + plan.get("test_seconds", 0.0) + self.save_reserve
        reason = self.tracker.over(guess + reserve, self.step_flops(group) + self.eval_flops)
        if self.agree([int(reason is not None)])[0]:
            self.tracker.stopped_by = reason or self.tracker.limits.binding  # another process's clock decided
            self._stop(state, "budget")
            return True
        return False

    def after_evaluation(self, state: LoopState, metrics: dict[str, Any]) -> None:
        value = metrics[self.metric]
        pruned = self.on_evaluation is not None and self.on_evaluation(len(state.history), metrics)  # always told
        if self.tc.stop_at_metric is not None and not is_better(self.metric, self.tc.stop_at_metric, value):
            self._stop(state, "target_reached")  # the value is at least as good as the target
        if pruned:
            self._stop(state, "pruned")
        if self.tc.early_stopping_patience and state.evals_without_improvement >= self.tc.early_stopping_patience:
            self._stop(state, "early_stopping")

    def after_step(self, state: LoopState, last_step: bool, cut_short: bool) -> bool:
        """True when the loop must leave now (a reason is set, or the user asked)."""
        if last_step:
            self._stop(state, "max_steps" if cut_short else "completed")
        code, user = self.agree([STOP_REASONS.index(state.stop_reason) + 1 if state.stop_reason else 0,
                                 int(self.user_requested)])
        if code:
            self._stop(state, STOP_REASONS[code - 1])
        self.user_requested = bool(user)
        return state.stop_reason is not None or self.user_requested

    def user_requested_anywhere(self) -> bool:
        """Did any process get a Ctrl-C (also one that arrived after the last step's agreement)?"""
        self.user_requested = bool(self.agree([int(self.user_requested)])[0])
        return self.user_requested

    def end_of_epochs(self, state: LoopState) -> None:
        self._stop(state, "completed")
