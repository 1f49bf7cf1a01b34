"""Budgets: fit a run into its time, cost and FLOP limits before it starts, and stop it gracefully at them.

``budget: {max_minutes, max_cost, max_flops}``. A cost limit is a time limit at the machine's price
(`cost.price_per_hour`, or the hardware profile's). Before training, :func:`plan` estimates the configured run
(the same estimate as ``thrifty estimate``, calibrated on this machine) and, if it does not fit, changes the
config in this order, saying what it changed and why: fewer epochs (and as many steps of the next one as fit);
a cheaper strategy (``full`` -> ``freeze`` of half the layers); a shorter ``max_length`` (the 95th percentile
of training lengths); and finally a step limit, so that the learning-rate schedule still ends where the money
does. During training the :class:`BudgetTracker` stops the loop before a step that would leave too little time
to evaluate the current weights, evaluate the test set and save the model; the best model so far is what is
kept.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from thrifty.config import Config
from thrifty.errors import ConfigError, ThriftyError

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


def limits_for(config: Config, hardware) -> Limits:
    budget = config.budget
    seconds, binding = None, ""
    if budget.max_minutes is not None:
        seconds, binding = budget.max_minutes * 60, "time"
    per_hour = hardware.machine_price_per_hour
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

    def report(self, accuracy: Optional[float], majority_accuracy: Optional[float], planned: Optional[dict]) -> dict[str, Any]:
        spent = self.spent_seconds
        lim = self.limits
        cost = self.cost_of(spent)
        gained = None if accuracy is None or majority_accuracy is None else 100 * (accuracy - majority_accuracy)
        return {
            "limit_seconds": None if lim.seconds is None else round(lim.seconds, 1),
            "spent_seconds": round(spent, 1),
            "stopped_by_budget": self.stopped_by is not None,
            "stopped_by": self.stopped_by,
            "limit_cost": lim.cost, "spent_cost": None if cost is None else round(cost, 5), "currency": lim.currency,
            "price_per_hour": lim.price_per_hour,
            "limit_flops": lim.flops, "spent_flops": self.flops,
            # What the accuracy above always-the-most-common-label cost, per percentage point.
            "cost_per_accuracy_point": None if cost is None or not gained or gained <= 0 else round(cost / gained, 6),
            "majority_baseline_accuracy": majority_accuracy,
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
    if report["cost_per_accuracy_point"] is not None:
        parts.append(f"{report['cost_per_accuracy_point']:.5f} {report['currency']} per accuracy point above "
                     f"the majority baseline ({report['majority_baseline_accuracy']:.3f})")
    energy = report.get("energy")
    if energy:
        parts.append(f"{1000 * energy['kwh']:.2f} Wh, {1000 * energy['co2_kg']:.2f} g CO2 ({energy['country']} grid)")
    stopped = f"; stopped by the {report['stopped_by']} budget" if report["stopped_by_budget"] else ""
    return "cost: " + ", ".join(parts) + stopped


# --------------------------------------------------------------------------------------------------
# Planning


def total_for_steps(e: dict[str, Any], steps: int) -> tuple[float, float]:
    """Seconds and FLOPs of the estimated run `e` cut (or extended) to `steps` optimizer steps."""
    from thrifty.training.schedule import evaluation_steps

    p = e["predicted"]
    epochs = steps / e["steps_per_epoch"]
    evaluations = len(evaluation_steps(steps, e["steps_per_epoch"], e["eval_every_steps"], e["evaluations_per_epoch"]))
    seconds = (p["frozen_cache_seconds"] + steps * p["seconds_per_step"] + evaluations * p["seconds_per_evaluation"]
               + p["test_seconds"])
    flops = e["cache_flops"] + e["train_flops_per_epoch"] * epochs + evaluations * e["eval_flops_each"]
    return seconds, flops


def plan(config: Config, inputs, model_path: str, tracker: BudgetTracker, log) -> tuple[Config, Any, dict[str, Any]]:
    """Fit `config` into the budget left in `tracker`; returns the (possibly changed) config and inputs and what
    was decided. Raises BudgetError when not even one step, one evaluation and saving fit."""
    from thrifty.cost.estimate import estimate_prepared

    t0 = time.perf_counter()
    estimate = estimate_prepared(config, inputs)
    calibration = estimate["calibration"]
    model_bytes = sum(p.numel() * p.element_size() for p in inputs.model.parameters())
    reserve = save_seconds(model_bytes)
    planned_seconds = lambda: time.perf_counter() - t0  # noqa: E731 - reported; the tracker's clock counts it anyway

    def fits(e: dict[str, Any], steps: int) -> bool:
        seconds, flops = total_for_steps(e, steps)
        return tracker.over(seconds + reserve, flops) is None

    def record(e: dict[str, Any], steps: int, changes: list[str], fitted: bool) -> dict[str, Any]:
        seconds, flops = total_for_steps(e, steps)
        p = e["predicted"]
        return {"fits": fitted, "predicted_seconds": round(seconds + reserve, 1), "predicted_flops": flops,
                "changes": changes, "planning_seconds": round(planned_seconds(), 1),
                # what the training loop needs to know before it has timed anything itself
                "seconds_per_step": p["seconds_per_step"], "seconds_per_evaluation": p["seconds_per_evaluation"],
                "test_seconds": p["test_seconds"]}

    full_steps = estimate["steps"]
    if fits(estimate, full_steps):
        return config, inputs, record(estimate, full_steps, [], True)
    seconds_needed, _ = total_for_steps(estimate, full_steps)
    why = _why(tracker, seconds_needed + reserve, total_for_steps(estimate, full_steps)[1])
    if not config.budget.plan:
        log(f"budget: the configured run needs more than the budget ({why}); budget.plan is off, so it will stop at the limit")
        return config, inputs, record(estimate, full_steps, [], False)

    changes: list[str] = []
    planned = copy.deepcopy(config)

    def best_epochs(e: dict[str, Any]) -> Optional[int]:
        for k in range(planned.train.epochs, 0, -1):
            if fits(e, k * e["steps_per_epoch"]):
                return k
        return None

    # 1. Fewer epochs: the most whole epochs that fit, then as much of the next one as fits (a step limit, so
    # the learning-rate schedule still ends with the budget rather than being cut off by it).
    k = best_epochs(estimate)
    if k is not None:
        spe = estimate["steps_per_epoch"]
        steps = _max_steps(estimate, fits, hi=min((k + 1) * spe, full_steps)) if k < config.train.epochs else k * spe
        if steps > k * spe:
            planned.train.epochs, planned.train.max_steps = k + 1, steps
            changes.append(f"train.epochs {config.train.epochs} -> {k + 1} with train.max_steps {steps} "
                           f"({steps / spe:.2f} epochs): {config.train.epochs} epochs need {why}")
        else:
            planned.train.epochs = k
            changes.append(f"train.epochs {config.train.epochs} -> {k}: {config.train.epochs} epochs need {why}")
        return _done(planned, inputs, record(estimate, steps, changes, True), log)
    changes.append(f"train.epochs {planned.train.epochs} -> 1: even 1 epoch does not fit ({why})")
    planned.train.epochs = 1

    # 2. A cheaper strategy: frozen bottom layers need no backward and, cached, no forward after the first pass.
    current = estimate
    if planned.strategy.name == "full":
        layers = getattr(inputs.model.config, "num_hidden_layers", 2)
        candidate = copy.deepcopy(planned)
        candidate.strategy.name, candidate.strategy.frozen_layers = "freeze", layers // 2
        inputs = rebuild_model(candidate, inputs, model_path)
        current = estimate_prepared(candidate, inputs, calibration=calibration)
        planned = candidate
        changes.append(f"strategy.name full -> freeze ({layers // 2} of {layers} layers frozen): "
                       f"{estimate['train_flops'] / 1e12:.2f} -> {current['train_flops'] / 1e12:.2f} TFLOP of training")
        if fits(current, current["steps_per_epoch"]):
            return _done(planned, inputs, record(current, current["steps_per_epoch"], changes, True), log)

    # 3. A shorter max_length: the 95th percentile of the training lengths.
    p95 = inputs.data.report["tokens"]["train"].get("p95")
    if p95 and p95 < inputs.max_length:
        candidate = copy.deepcopy(planned)
        candidate.data.max_length = max(8, int(p95))
        inputs = _reencode(inputs, candidate.data.max_length)
        current = estimate_prepared(candidate, inputs, calibration=calibration)
        changes.append(f"data.max_length {estimate['max_length']} -> {candidate.data.max_length} (95% of training texts "
                       f"fit): {estimate['padded_tokens_per_epoch']:,} -> {current['padded_tokens_per_epoch']:,} tokens/epoch")
        planned = candidate
        if fits(current, current["steps_per_epoch"]):
            return _done(planned, inputs, record(current, current["steps_per_epoch"], changes, True), log)

    # 4. Part of an epoch: a step limit the learning-rate schedule is fitted to.
    steps = _max_steps(current, fits)
    if steps < 1:
        one_step, one_step_flops = total_for_steps(current, 1)
        if tracker.over(one_step + reserve, 0.0) is None:  # time would do: the FLOP limit is what fails
            raise BudgetError(
                f"the budget is too small for even one training step: one step with its evaluation needs "
                f"{one_step_flops / 1e12:.3f} TFLOP and the budget leaves {max(tracker.remaining_flops(), 0) / 1e12:.3f}; "
                "raise budget.max_flops or use less data")
        spent = tracker.spent_seconds
        needed_minutes = math.ceil((spent + one_step + reserve) / 60 * 1.05 * 100) / 100
        raise BudgetError(
            f"the budget is too small for even one training step: this run needs at least {needed_minutes:g} minutes "
            f"({spent:.0f} s already spent reading data, loading and estimating, {one_step:.0f} s for one step with its "
            f"evaluation, {reserve:.0f} s to save); raise budget.max_minutes (or max_cost) or use less data")
    planned.train.max_steps = steps
    changes.append(f"train.max_steps -> {steps} of {current['steps_per_epoch']} steps in the epoch "
                   "(the learning-rate schedule ends at that step)")
    return _done(planned, inputs, record(current, steps, changes, True), log)


def _why(tracker: BudgetTracker, seconds: float, flops: float) -> str:
    left = tracker.remaining_seconds()
    parts = []
    if left is not None and seconds > left:
        parts.append(f"{seconds:.0f} s, the budget leaves {max(left, 0):.0f} s")
    left_flops = tracker.remaining_flops()
    if left_flops is not None and flops > left_flops:
        parts.append(f"{flops / 1e12:.2f} TFLOP, the budget allows {left_flops / 1e12:.2f}")
    return "; ".join(parts) or "within the budget"


def _max_steps(e: dict[str, Any], fits, hi: Optional[int] = None) -> int:
    lo, hi = 0, e["steps_per_epoch"] if hi is None else hi
    while lo < hi:  # the largest step count that fits (seconds and FLOPs grow with steps)
        mid = (lo + hi + 1) // 2
        if fits(e, mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _done(config: Config, inputs, record: dict[str, Any], log) -> tuple[Config, Any, dict[str, Any]]:
    for change in record["changes"]:
        log(f"budget plan: {change}")
    log(f"budget plan: predicted {record['predicted_seconds']:.0f} s including saving")
    config.validate()
    return config, inputs, record


def rebuild_model(config: Config, inputs, model_path: str):
    """The same data and tokens with a freshly loaded model under another strategy."""
    from thrifty.models.loading import load_classifier
    from thrifty.strategies import apply_strategy

    model, new_keys = load_classifier(model_path, inputs.data.label_names, dropout=config.train.dropout,
                                      trust_remote_code=config.model.trust_remote_code,
                                      pad_token_id=inputs.tokenizer.pad_token_id)
    model, strategy = apply_strategy(model, config.strategy, new_keys)
    return dataclasses.replace(inputs, model=model, strategy=strategy)


def _reencode(inputs, max_length: int):
    from thrifty.data.tokenize import encode

    data, tokens = inputs.data, inputs.tokens
    encoded = {
        "train_ids": tokens.encode(data.train.texts, max_length, encode),
        "val_ids": tokens.encode(data.validation.texts, max_length, encode),
        "test_ids": tokens.encode(data.test.texts, max_length, encode) if data.test is not None else None,
    }
    data.report["tokens"]["max_length"] = max_length
    return dataclasses.replace(inputs, **encoded, max_length=max_length,
                               max_length_how=f"budget plan: p95 of training lengths (was {inputs.max_length_how})")
