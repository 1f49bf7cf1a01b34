"""Budgets: fit a run into its time, cost and FLOP limits before it starts, and stop it gracefully at them.

``budget: {max_minutes, max_cost, max_flops}``. A cost limit is a time limit at the machine's price
(`cost.price_per_hour`, or the hardware profile's). Before training, planning/budget_plan.py fits the run
into the budget using :func:`total_for_steps` of its estimate. During training the :class:`BudgetTracker` stops the loop before a step that would leave too little time
to evaluate the current weights, evaluate the test set and save the model; the best model so far is what is
kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from thrifty.config import Config
from thrifty.errors import ConfigError, ThriftyError
from thrifty.optimization.schedule import evaluation_steps

SAVE_SECONDS_FIXED = 3.0  # plots, tokenizer, TensorBoard flush, status files
SAVE_BYTES_PER_SECOND = 50e6  # writing the model's safetensors


class BudgetError(ThriftyError):
    """The budget cannot buy even the smallest useful run."""


@dataclass
class Limits:
    seconds: Optional[float]  # the tighter of max_minutes and max_cost at the machine's price
    flops: Optional[float]
    cost: Optional[float]
    price_per_hour: Optional[float]
    currency: str
    binding: str  # which limit sets `seconds`: "time" or "cost" (or "" when none)


def limits_for(config: Config, hardware, machines: int = 1) -> Limits:
    """`machines`: a run over several machines (torchrun across nodes) pays for each of them."""
    budget = config.budget
    seconds, binding = None, ""
    if budget.max_minutes is not None:
        seconds, binding = budget.max_minutes * 60, "time"
    per_hour = hardware.machine_price_per_hour
    if per_hour is not None:
        per_hour *= machines
    if budget.max_cost is not None:
        if per_hour is None:
            raise ConfigError(f"budget.max_cost needs a price, and hardware '{hardware.name}' has none; set cost.price_per_hour")
        if per_hour > 0:
            by_cost = budget.max_cost / per_hour * 3600
            if seconds is None or by_cost < seconds:
                seconds, binding = by_cost, "cost"
    return Limits(seconds, budget.max_flops, budget.max_cost, per_hour, config.cost.currency, binding)


def save_seconds(model_bytes: int) -> float:
    return SAVE_SECONDS_FIXED + model_bytes / SAVE_BYTES_PER_SECOND


@dataclass
class BudgetTracker:
    """Spent time (wall clock since the run started, plus earlier sessions of a resumed run) and FLOPs."""

    limits: Limits
    started: float = field(default_factory=time.perf_counter)
    seconds_before: float = 0.0  # spent by earlier sessions of a resumed run
    flops: float = 0.0
    stopped_by: Optional[str] = None

    @property
    def spent_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def cost_of(self, seconds: float) -> Optional[float]:
        per_hour = self.limits.price_per_hour
        return None if per_hour is None else seconds / 3600 * per_hour

    def cost_so_far(self) -> Optional[float]:
        return self.cost_of(self.spent_seconds)

    def remaining_seconds(self) -> Optional[float]:
        return None if self.limits.seconds is None else self.limits.seconds - self.spent_seconds

    def remaining_flops(self) -> Optional[float]:
        return None if self.limits.flops is None else self.limits.flops - self.flops

    def over(self, seconds: float, flops: float) -> Optional[str]:
        """Which limit `seconds` more time and `flops` more FLOPs would break (None: both fit)."""
        left = self.remaining_seconds()
        if left is not None and seconds > left:
            return self.limits.binding
        left_flops = self.remaining_flops()
        if left_flops is not None and flops > left_flops:
            return "flops"
        return None

    def report(self, metric: str, value: Optional[float], baseline: Optional[float], planned: Optional[dict]) -> dict[str, Any]:
        """What was spent against the limits, and what each point of `metric` above the trivial baseline cost."""
        spent = self.spent_seconds
        lim = self.limits
        cost = self.cost_of(spent)
        gained = None if value is None or baseline is None else 100 * (value - baseline)
        return {
            "limit_seconds": None if lim.seconds is None else round(lim.seconds, 1),
            "spent_seconds": round(spent, 1),
            "stopped_by_budget": self.stopped_by is not None,
            "stopped_by": self.stopped_by,
            "limit_cost": lim.cost, "spent_cost": None if cost is None else round(cost, 5), "currency": lim.currency,
            "price_per_hour": lim.price_per_hour,
            "limit_flops": lim.flops, "spent_flops": self.flops,
            # What each percentage point of the task's primary metric above the trivial predictor (always the most
            # common label; no entity) cost.
            "metric": metric,
            "cost_per_point": None if cost is None or not gained or gained <= 0 else round(cost / gained, 6),
            "baseline": baseline,
            "plan": planned,
        }


def format_spent(report: dict[str, Any]) -> str:
    """One line: spent against the budget, in time, money and FLOPs."""
    parts = [f"spent {report['spent_seconds']:.0f} s"
             + (f" of {report['limit_seconds']:.0f} s" if report["limit_seconds"] is not None else "")]
    if report["spent_cost"] is not None:
        parts.append(f"{report['spent_cost']:.4f} {report['currency']}"
                     + (f" of {report['limit_cost']:g}" if report["limit_cost"] is not None else ""))
    if report["limit_flops"] is not None:
        parts.append(f"{report['spent_flops'] / 1e12:.2f} of {report['limit_flops'] / 1e12:.2f} TFLOP")
    if report["cost_per_point"] is not None:
        parts.append(f"{report['cost_per_point']:.5f} {report['currency']} per {report['metric']} point above "
                     f"the trivial baseline ({report['baseline']:.3f})")
    energy = report.get("energy")
    if energy:
        parts.append(f"{1000 * energy['kwh']:.2f} Wh, {1000 * energy['co2_kg']:.2f} g CO2 ({energy['country']} grid)")
    stopped = f"; stopped by the {report['stopped_by']} budget" if report["stopped_by_budget"] else ""
    return "cost: " + ", ".join(parts) + stopped


# --------------------------------------------------------------------------------------------------
# Planning


def total_for_steps(e: dict[str, Any], steps: int) -> tuple[float, float]:
    """Seconds and FLOPs of the estimated run `e` cut (or extended) to `steps` optimizer steps."""
    p = e["predicted"]
    epochs = steps / e["steps_per_epoch"]
    evaluations = len(evaluation_steps(steps, e["steps_per_epoch"], e["eval_every_steps"], e["evaluations_per_epoch"]))
    seconds = (p["frozen_cache_seconds"] + steps * p["seconds_per_step"] + evaluations * p["seconds_per_evaluation"]
               + p["test_seconds"])
    flops = e["cache_flops"] + e["train_flops_per_epoch"] * epochs + evaluations * e["eval_flops_each"]
    return seconds, flops
