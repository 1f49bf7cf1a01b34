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
from thrifty.cost.estimate import estimate_prepared, estimate_shape
from thrifty.cost.hardware import hardware_for
from thrifty.cost.shape import RunShape, measure_shape
from thrifty.inputs import cut_warnings_at, load_model, reencode
from thrifty.traits import strategy_traits, task_traits


class _Fit:
    """Does a run of `steps` steps, as estimated (`e`), fit what the budget leaves, saving included? And the record
    of a decision: what the training loop needs to know before it has timed anything itself."""

    def __init__(self, tracker: BudgetTracker, reserve: float, started: float) -> None:
        self.tracker, self.reserve, self.started = tracker, reserve, started  # started: when planning began

    def __call__(self, e: dict[str, Any], steps: int) -> bool:
        seconds, flops = total_for_steps(e, steps)
        return self.tracker.over(seconds + self.reserve, flops) is None

    def record(self, e: dict[str, Any], steps: int, changes: list[str], fitted: bool) -> dict[str, Any]:
        seconds, flops = total_for_steps(e, steps)
        p = e["predicted"]
        return {"fits": fitted, "predicted_seconds": round(seconds + self.reserve, 1), "predicted_flops": flops,
                "changes": changes,
                # reported; the tracker's clock counts it anyway
                "planning_seconds": round(time.perf_counter() - self.started, 1),
                "seconds_per_step": p["seconds_per_step"], "seconds_per_evaluation": p["seconds_per_evaluation"],
                "test_seconds": p["test_seconds"]}


def plan(config: Config, inputs, model_path: str, tracker: BudgetTracker, log) -> tuple[Config, Any, dict[str, Any]]:
    """Fit `config` into the budget left in `tracker`; returns the (possibly changed) config and inputs and what
    was decided. Raises BudgetError when not even one step, one evaluation and saving fit."""
    t0 = time.perf_counter()
    shape, hardware = measure_shape(config, inputs), hardware_for(config.cost)  # measured once; candidates change it
    estimate = estimate_prepared(config, inputs, shape=shape, hardware=hardware)
    model_bytes = sum(p.numel() * p.element_size() for p in inputs.model.parameters())
    fits = _Fit(tracker, save_seconds(model_bytes), started=t0)
    full_steps = estimate["steps"]
    if fits(estimate, full_steps):
        return config, inputs, fits.record(estimate, full_steps, [], True)
    seconds_needed, _ = total_for_steps(estimate, full_steps)
    why = _why(tracker, seconds_needed + fits.reserve, total_for_steps(estimate, full_steps)[1])
    if not config.budget.plan:
        log(f"budget: the configured run needs more than the budget ({why}); budget.plan is off, so it will stop at the limit")
        return config, inputs, fits.record(estimate, full_steps, [], False)

    changes: list[str] = []
    planned = copy.deepcopy(config)
    # 1. Fewer epochs: the most whole epochs that fit, then as much of the next one as fits (a step limit, so
    # the learning-rate schedule still ends with the budget rather than being cut off by it).
    steps = _fewer_epochs(planned, estimate, fits, why, changes)
    if steps is not None:
        return _done(planned, inputs, fits.record(estimate, steps, changes, True), log)
    changes.append(f"train.epochs {planned.train.epochs} -> 1: even 1 epoch does not fit ({why})")
    planned.train.epochs, shape = 1, shape.with_epochs(1)
    # 2. A cheaper strategy, then 3. a shorter max_length, each kept once tried; the first that fits one epoch ends it
    current = estimate
    for change in (_cheaper_strategy, _shorter_max_length):
        before = current
        planned, inputs, shape, current = change(planned, inputs, shape, model_path, hardware, estimate, current,
                                                 changes)
        if current is not before and fits(current, current["steps_per_epoch"]):
            return _done(planned, inputs, fits.record(current, current["steps_per_epoch"], changes, True), log, shape)

    # 4. Part of an epoch: a step limit the learning-rate schedule is fitted to.
    steps = _max_steps(current, fits)
    if steps < 1:
        raise _too_small(current, tracker, fits.reserve)
    planned.train.max_steps = steps
    changes.append(f"train.max_steps -> {steps} of {current['steps_per_epoch']} steps in the epoch "
                   "(the learning-rate schedule ends at that step)")
    return _done(planned, inputs, fits.record(current, steps, changes, True), log, shape)


def _fewer_epochs(planned: Config, estimate: dict[str, Any], fits: _Fit, why: str, changes: list[str]) -> Optional[int]:
    """The most whole epochs that fit, and as many steps of the next as fit, set on `planned`: the steps of the run;
    None when not even one epoch fits."""
    spe, configured = estimate["steps_per_epoch"], planned.train.epochs
    k = next((k for k in range(configured, 0, -1) if fits(estimate, k * spe)), None)
    if k is None:
        return None
    steps = _max_steps(estimate, fits, hi=min((k + 1) * spe, estimate["steps"])) if k < configured else k * spe
    if steps > k * spe:
        planned.train.epochs, planned.train.max_steps = k + 1, steps
        changes.append(f"train.epochs {configured} -> {k + 1} with train.max_steps {steps} "
                       f"({steps / spe:.2f} epochs): {configured} epochs need {why}")
    else:
        planned.train.epochs = k
        changes.append(f"train.epochs {configured} -> {k}: {configured} epochs need {why}")
    return steps


def _cheaper_strategy(planned: Config, inputs, shape: RunShape, model_path: str, hardware, estimate: dict[str, Any],
                      current: dict[str, Any], changes: list[str]):
    """Frozen bottom layers need no backward and, cached, no forward after the first pass: the strategy's cheaper
    one (full -> freeze of half the layers), where it has one. The model is loaded again under it and its shape
    measured (parameters, FLOPs, memory): the tokens are the same."""
    cheaper = strategy_traits(planned.strategy.name).cheaper
    if cheaper is None or not task_traits(planned.task).fits(cheaper):
        return planned, inputs, shape, current
    layers = getattr(inputs.model.config, "num_hidden_layers", 2)
    candidate = copy.deepcopy(planned)
    candidate.strategy.name, candidate.strategy.frozen_layers = cheaper, layers // 2
    inputs = rebuild_model(candidate, inputs, model_path)
    shape = measure_shape(candidate, inputs)
    current = estimate_shape(shape, hardware, calibration=estimate["calibration"], currency=candidate.cost.currency)
    changes.append(f"strategy.name {planned.strategy.name} -> {cheaper} ({layers // 2} of {layers} layers frozen): "
                   f"{estimate['train_flops'] / 1e12:.2f} -> {current['train_flops'] / 1e12:.2f} TFLOP of training")
    return candidate, inputs, shape, current


def _shorter_max_length(planned: Config, inputs, shape: RunShape, model_path: str, hardware, estimate: dict[str, Any],
                        current: dict[str, Any], changes: list[str]):
    """The 95th percentile of the training lengths as max_length, where it is shorter: counted on the shape (texts
    cut at it, without tokenising; `_done` tokenises once for the plan that keeps it), or, for a task whose texts
    are not plainly truncated (windows, packing), tokenised again now."""
    p95 = inputs.data.report["tokens"]["train"].get("p95")
    if not (p95 and p95 < inputs.max_length):
        return planned, inputs, shape, current
    candidate = copy.deepcopy(planned)
    candidate.data.max_length = max(8, int(p95))
    n = candidate.data.max_length
    if shape.truncates:
        shape, warnings = shape.with_max_length(n), cut_warnings_at(inputs, n)
    else:
        inputs = reencode(inputs, n, _how(inputs))
        shape, warnings = measure_shape(candidate, inputs), inputs.data.report["tokens"].get("cut_warnings", [])
    current = estimate_shape(shape, hardware, calibration=estimate["calibration"], currency=candidate.cost.currency)
    changes.append(f"data.max_length {estimate['max_length']} -> {candidate.data.max_length} (95% of training texts "
                   f"fit): {estimate['padded_tokens_per_epoch']:,} -> {current['padded_tokens_per_epoch']:,} tokens/epoch"
                   + "".join(f"; warning: {w}" for w in warnings))
    return candidate, inputs, shape, current


def _how(inputs) -> str:
    return f"budget plan: p95 of training lengths (was {inputs.max_length_how})"


def _too_small(current: dict[str, Any], tracker: BudgetTracker, reserve: float) -> BudgetError:
    """Not even one step with its evaluation and saving fits: which limit fails, and by how much."""
    one_step, one_step_flops = total_for_steps(current, 1)
    if tracker.over(one_step + reserve, 0.0) is None:  # time would do: the FLOP limit is what fails
        return BudgetError(
            f"the budget is too small for even one training step: one step with its evaluation needs "
            f"{one_step_flops / 1e12:.3f} TFLOP and the budget leaves {max(tracker.remaining_flops(), 0) / 1e12:.3f}; "
            "raise budget.max_flops or use less data")
    spent = tracker.spent_seconds
    needed_minutes = math.ceil((spent + one_step + reserve) / 60 * 1.05 * 100) / 100
    return BudgetError(
        f"the budget is too small for even one training step: this run needs at least {needed_minutes:g} minutes "
        f"({spent:.0f} s already spent reading data, loading and estimating, {one_step:.0f} s for one step with its "
        f"evaluation, {reserve:.0f} s to save); raise budget.max_minutes (or max_cost) or use less data")


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


def _done(config: Config, inputs, record: dict[str, Any], log,
          shape: Optional[RunShape] = None) -> tuple[Config, Any, dict[str, Any]]:
    """The plan said; the tokens encoded once at the planned max_length where the plan shortened it on its shape."""
    if shape is not None and shape.max_length != inputs.max_length:
        inputs = reencode(inputs, shape.max_length, _how(inputs))
    for change in record["changes"]:
        log(f"budget plan: {change}")
    log(f"budget plan: predicted {record['predicted_seconds']:.0f} s including saving")
    config.validate()
    return config, inputs, record


def rebuild_model(config: Config, inputs, model_path: str):
    """The same data and tokens with a freshly loaded model under another strategy."""
    model, strategy, _ = load_model(config, inputs.task, model_path, inputs.data.label_names, inputs.tokenizer.pad_token_id)
    return dataclasses.replace(inputs, model=model, strategy=strategy)
