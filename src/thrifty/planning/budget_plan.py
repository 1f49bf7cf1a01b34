"""Planning a run into its budget before it starts (the budget itself, and stopping at it, are in cost/budget.py).

If the configured run does not fit, the config is changed in this order, each change said with why: fewer
epochs (and as many steps of the next one as fit); a cheaper strategy (``full`` -> ``freeze`` of half the
layers); a shorter ``max_length`` (the 95th percentile of training lengths); and finally a step limit, so that
the learning-rate schedule still ends where the money does.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Optional

from thrifty.config import Config
from thrifty.cost.budget import BudgetError, BudgetTracker, save_seconds, total_for_steps
from thrifty.cost.estimate import estimate_prepared
from thrifty.inputs import load_model, reencode


def plan(config: Config, inputs, model_path: str, tracker: BudgetTracker, log) -> tuple[Config, Any, dict[str, Any]]:
    """Fit `config` into the budget left in `tracker`; returns the (possibly changed) config and inputs and what
    was decided. Raises BudgetError when not even one step, one evaluation and saving fit."""
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
        inputs = reencode(inputs, candidate.data.max_length,
                          f"budget plan: p95 of training lengths (was {inputs.max_length_how})")
        current = estimate_prepared(candidate, inputs, calibration=calibration)
        changes.append(f"data.max_length {estimate['max_length']} -> {candidate.data.max_length} (95% of training texts "
                       f"fit): {estimate['padded_tokens_per_epoch']:,} -> {current['padded_tokens_per_epoch']:,} tokens/epoch"
                       + "".join(f"; warning: {w}" for w in inputs.data.report["tokens"].get("cut_warnings", [])))
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
    model, strategy, _ = load_model(config, inputs.task, model_path, inputs.data.label_names, inputs.tokenizer.pad_token_id)
    return dataclasses.replace(inputs, model=model, strategy=strategy)
