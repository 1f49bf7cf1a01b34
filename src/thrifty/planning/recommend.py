"""`thrifty recommend`: which model, strategy, epochs and max length fit the budget and the data, and why.

Candidates are the catalog's models whose weights are on this machine (or the ones named with
``--models``), each under ``full``, ``lora`` and ``freeze``. Each is estimated on the user's real data
(`cost.estimate`: counted FLOPs, counted memory, time calibrated here or predicted for ``--hardware``), then
given as many epochs as the budget pays for, up to a target that depends on the data size (small data
sets need more passes). The choice follows stated rules, printed with it:

1. a candidate must fit in memory and afford at least the minimum epochs (2, or 1 for 20,000+ examples);
2. among those, the larger model wins (more pretrained capacity is the most reliable accuracy gain at
   equal epochs);
3. at the same model, ``full`` > ``lora`` > ``freeze`` (what each strategy can change), then more epochs;
4. but when a class has at most (the median over classes) ``FEWSHOT_MAX_PER_CLASS`` training examples, ``fewshot`` (pairs, a
   fitted head) on the largest sentence encoder that affords it: full fine-tuning learns little from a
   handful of examples per class (measured in benchmarks/results/fewshot_*.md).

It is a starting point, not a guarantee: ``thrifty tune`` measures what the rules only predict.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from thrifty.config import Config, dump_config
from thrifty.errors import ConfigError, DataError, ModelError
from thrifty.traits import strategy_traits, task_traits

STRATEGIES = ("full", "lora", "freeze")  # the strategies weighed for every task they fit (head: a probe, not advised)
STRATEGY_RANK = {"full": 3, "lora": 2, "freeze": 1}  # among equals, the one that trains more (others: 0)
FEWSHOT_MAX_PER_CLASS = 64  # up to here few-shot learning beat full fine-tuning in the measurements (at 8 per class
#                              by 10-42 points), except TREC-6 at 64 per class (0.5 points below; docs/fewshot.md)


def target_epochs(examples: int) -> int:
    return 5 if examples < 1_000 else 4 if examples < 5_000 else 3 if examples < 20_000 else 2


def minimum_epochs(examples: int) -> int:
    return 1 if examples >= 20_000 else 2


def recommend(base: Config, models: Optional[list[str]] = None, log=print) -> dict[str, Any]:
    from thrifty.cost import budget as budget_mod
    from thrifty.cost.hardware import hardware_for
    from thrifty.models.catalog import catalog

    if models is None:
        models = [m.name for m in catalog() if m.offline()]
        if not models:
            raise ConfigError("no catalog model is available offline here; name one with --models (a local folder works)")
    hardware = hardware_for(base.cost)
    limits = budget_mod.limits_for(base, hardware)
    sizes = {m.name: m.parameters_m for m in catalog()} | {m.id: m.parameters_m for m in catalog()}
    candidates: list[dict[str, Any]] = []
    examples, per_class = None, 0
    for name in models:
        examples, per_class, found = _candidates(base, name, hardware, limits, sizes, log)
        candidates += found
    need = minimum_epochs(examples)
    for c in candidates:
        c["eligible"] = c["fits_memory"] and c["epochs"] >= need
    eligible = [c for c in candidates if c["eligible"]]
    reasons = [f"{examples:,} training examples: target {target_epochs(examples)} epochs, at least {need}"]
    if limits.seconds is not None or limits.flops is not None:
        reasons.append("budget: " + ", ".join(p for p in (
            f"{limits.seconds / 60:.1f} min" if limits.seconds is not None else "",
            f"{limits.flops / 1e12:.1f} TFLOP" if limits.flops is not None else "") if p)
            + f" on {hardware.name}")
    if not eligible:
        cheapest = min(candidates, key=lambda c: c["predicted_seconds"])
        raise ConfigError(
            f"no candidate affords {need} epochs within the budget: the cheapest, {cheapest['model']} {cheapest['strategy']}, "
            f"needs about {cheapest['predicted_seconds'] / 60:.1f} min for one epoch; raise the budget or use "
            "--data.max_train_examples")
    fewshot = [c for c in eligible if _pairs(c)]
    choice = max(fewshot or eligible, key=lambda c: (c["parameters_m"], STRATEGY_RANK.get(c["strategy"], 0), c["epochs"]))
    reasons += _reasons(base, choice, candidates, need, examples, per_class, hardware)
    config = copy.deepcopy(base)
    config.model.name, config.strategy.name, config.train.epochs = choice["model"], choice["strategy"], choice["epochs"]
    if _pairs(choice):  # no labelled dev set to choose with at this size: evaluate at the end
        config.train.eval_every_steps = choice["epochs"] * choice["steps_per_epoch"]
    return {"choice": choice, "reasons": reasons, "candidates": candidates, "config": config, "examples": examples,
            "hardware": hardware.name}


def _pairs(candidate: dict[str, Any]) -> bool:
    """A candidate whose strategy trains a sentence encoder on pairs (few-shot)."""
    return strategy_traits(candidate["strategy"]).trains_pairs


def _candidates(base: Config, name: str, hardware, limits, sizes: dict[str, float],
                log) -> tuple[int, float, list[dict[str, Any]]]:
    """Model `name` under each strategy, estimated on the real data: (training examples, the median examples per
    class, the candidates)."""
    from thrifty.cost import budget as budget_mod
    from thrifty.cost.estimate import estimate_prepared
    from thrifty.inputs import prepare_inputs
    from thrifty.models.loading import resolve_model
    from thrifty.planning.budget_plan import rebuild_model

    t0 = time.perf_counter()
    config = copy.deepcopy(base)
    config.model.name, config.strategy.name = name, STRATEGIES[0]
    log(f"estimating {name} ...")
    path = resolve_model(name)
    inputs = prepare_inputs(config, path)
    setup_seconds = time.perf_counter() - t0  # reading data and loading the model: paid by every run
    examples = len(inputs.train_ids)
    task = task_traits(base.task)
    per_class = statistics.median(Counter(inputs.data.train.labels).values()) if task.predicts_labels else 0
    few = task.predicts_labels and per_class <= FEWSHOT_MAX_PER_CLASS
    pair_strategies = tuple(s for s in task.strategies if strategy_traits(s).trains_pairs) if few else ()
    calibration, found = None, []
    for i, strategy in enumerate(tuple(s for s in STRATEGIES if task.fits(s)) + pair_strategies):
        config = copy.deepcopy(config)
        config.strategy.name = strategy
        if strategy_traits(strategy).trains_pairs:  # its own task and model (tasks/fewshot.py); an encoder only
            try:
                inputs = prepare_inputs(config, path)
            except (ModelError, DataError):
                continue  # a decoder (not a sentence encoder), or a class with a single example
        elif i > 0:  # the first strategy's model is the one loaded above
            inputs = rebuild_model(config, inputs, path)
        e = estimate_prepared(config, inputs, calibration=calibration, hardware=hardware)
        calibration = e["calibration"] or calibration
        reserve = setup_seconds + budget_mod.save_seconds(4 * e["total_parameters"])
        tracker = budget_mod.BudgetTracker(limits, seconds_before=0.0)
        epochs, seconds, flops = 0, None, None
        wanted = target_epochs(examples)
        if strategy_traits(strategy).trains_pairs:
            from thrifty.tasks.fewshot import recommended_epochs

            wanted = recommended_epochs(len(inputs.data.label_names), e["steps_per_epoch"])
        for k in range(wanted, 0, -1):
            s, f = budget_mod.total_for_steps(e, k * e["steps_per_epoch"])
            if tracker.over(s + reserve, f) is None:
                epochs, seconds, flops = k, s + reserve, f
                break
        if epochs == 0:
            seconds, flops = budget_mod.total_for_steps(e, e["steps_per_epoch"])
            seconds += reserve
        per_hour = hardware.machine_price_per_hour
        found.append({
            "model": name, "strategy": strategy, "epochs": epochs, "max_length": e["max_length"],
            "parameters_m": round(sizes.get(name, e["total_parameters"] / 1e6), 1),
            "trainable_parameters": e["trainable_parameters"], "peak_memory_bytes": e["peak_memory_bytes"],
            "fits_memory": e["fits_memory"] is not False, "predicted_seconds": round(seconds, 1),
            "fsdp_to_fit": e.get("fsdp_to_fit"),
            "predicted_flops": flops, "cost": None if per_hour is None else round(seconds / 3600 * per_hour, 5),
            "seconds_per_epoch": round(e["predicted"]["seconds_per_step"] * e["steps_per_epoch"], 1),
            "steps_per_epoch": e["steps_per_epoch"],
        })
    return examples, per_class, found


def _reasons(base: Config, choice: dict[str, Any], candidates: list[dict[str, Any]], need: int, examples: int,
             per_class: float, hardware) -> list[str]:
    """Why `choice`, in the order of the rules; and how a candidate too big for one device would fit several."""
    reasons = []
    bigger = [c for c in candidates if c["parameters_m"] > choice["parameters_m"] and not c["eligible"]]
    if bigger:
        b = max(bigger, key=lambda c: c["parameters_m"])
        reasons.append(f"{b['model']} is larger but affords only {b['epochs']} epoch(s)"
                       + ("" if b["fits_memory"] else " and does not fit in memory"))
    for c in candidates:  # too big for one device: how many would hold it sharded
        if not c["fits_memory"] and c["fsdp_to_fit"]:
            k = c["fsdp_to_fit"]["processes"]
            reasons.append(f"{c['model']} {c['strategy']} does not fit one {hardware.name} but fits {k} with FSDP "
                           f"({c['fsdp_to_fit']['peak_memory_bytes_per_process'] / 2**30:.1f} GiB each): "
                           f"--model.name {c['model']} --strategy.name {c['strategy']} --processes {k} --train.fsdp true")
    reasons.append(f"{choice['model']} is the largest model that affords {need}+ epochs")
    richer = [c for c in candidates if c["model"] == choice["model"] and STRATEGY_RANK.get(c["strategy"], 0) > STRATEGY_RANK.get(choice["strategy"], 0)]
    if _pairs(choice):
        reasons.append(f"{choice['strategy']}: a class has {per_class:g} training examples (median; at most "
                       f"{FEWSHOT_MAX_PER_CLASS}); contrastive pairs and a fitted head learn more from a few examples per "
                       "class than full fine-tuning (benchmarks/results/fewshot_*.md); epochs: 3 for two classes, 6 "
                       "for more, at least 6 steps (chosen on dev splits, tasks/fewshot.recommended_epochs)")
        from thrifty.tasks.fewshot import END_TO_END_MIN_ROWS, automatic_end_to_end_epochs

        end_to_end = automatic_end_to_end_epochs(examples, choice["epochs"])
        if base.strategy.fewshot.end_to_end_epochs is None and end_to_end:
            reasons.append(f"{choice['strategy']} end to end: {examples:,} training rows (>= {END_TO_END_MIN_ROWS:,}), "
                           f"so the last {end_to_end} epochs train encoder and head on the labels (ahead of pairs only "
                           "from thousands of rows; docs/fewshot.md)")
    elif richer:
        reasons.append(f"{choice['strategy']} rather than {', '.join(c['strategy'] for c in richer)}: those afford "
                       f"only {', '.join(str(c['epochs']) for c in richer)} epoch(s)")
    else:
        reasons.append(f"{choice['strategy']}: the strategy that can change the most weights, and it fits")
    return reasons


def format_recommendation(r: dict[str, Any]) -> str:
    gib = 2**30
    lines = [f"{'model':<34} {'strategy':<8} {'epochs':>6} {'max len':>7} {'s/epoch':>8} {'total s':>8} {'cost':>9} "
             f"{'memory':>8}  fits"]
    for c in r["candidates"]:
        mark = "<- chosen" if c is r["choice"] else ("yes" if c["eligible"] else "no")
        cost = "-" if c["cost"] is None else f"{c['cost']:.4f}"
        lines.append(f"{c['model']:<34} {c['strategy']:<8} {c['epochs']:>6} {c['max_length']:>7} {c['seconds_per_epoch']:>8.0f} "
                     f"{c['predicted_seconds']:>8.0f} {cost:>9} {c['peak_memory_bytes'] / gib:>6.2f}Gi  {mark}")
    c = r["choice"]
    lines.append(f"recommended: model.name={c['model']} strategy.name={c['strategy']} train.epochs={c['epochs']} "
                 f"(max_length {c['max_length']}, about {c['predicted_seconds'] / 60:.1f} min on {r['hardware']})")
    lines += [f"  because {reason}" for reason in r["reasons"]]
    return "\n".join(lines)


def save_recommendation(r: dict[str, Any], path: Path) -> None:
    dump_config(r["config"], path)
