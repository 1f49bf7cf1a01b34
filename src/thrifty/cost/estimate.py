"""`thrifty estimate`: what a run will cost before it starts, from the real data and a short calibration.

The arithmetic (parameters, tokens, FLOPs, memory) is counted from the configured model, strategy and the
real tokenised data, with the same batches the training loop will use. The time comes from timing a few
real training steps on this machine (after one warm-up step) and a forward pass over validation texts,
converted to seconds per FLOP, then scaled to every step and every evaluation of the run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from thrifty.config import Config
from thrifty.cost.shape import RunShape, last_layer_pruned, measured, prunes

CALIBRATION_STEPS = 4
STEP_OVERHEAD_SECONDS = 0.002  # per optimizer step: the JSON log line, TensorBoard scalars, the progress bar
EVAL_OVERHEAD_SECONDS = 0.05  # per evaluation: metrics, TensorBoard, the log line
COPY_BYTES_PER_SECOND = 2e9  # an improved evaluation copies the trainable weights (the best so far)
# Several processes on this machine (gloo over loopback): all_reduce of MiniLM's 22.7M fp32 gradients (91 MB) between
# 2 processes took 76 ms on this project's 2-core machine, a 2-float all_reduce 0.44 ms (2026-11-29). A ring moves
# 2(N-1)/N of the bytes.
GLOO_BYTES_PER_SECOND = 1.2e9
COLLECTIVE_SECONDS = 0.00045
COLLECTIVES_PER_STEP = 3  # the stop decisions before and after a step, the step's loss


def estimate(config: Config | str | Path | dict | None = None, overrides: Optional[list[str]] = None,
             calibration_steps: int = CALIBRATION_STEPS, processes: int = 1) -> dict[str, Any]:
    """The estimate of a config: the data is read and tokenised and the model loaded, exactly as `train` would.
    `processes`: the run as `thrifty train --processes N` would make it (on a CPU: the cores split between them)."""
    from thrifty.inputs import as_config, prepare_inputs
    from thrifty.models.loading import resolve_model

    config = as_config(config, overrides)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    started = time.perf_counter()
    inputs = prepare_inputs(config, resolve_model(config.model.name))
    result = estimate_prepared(config, inputs, calibration_steps=calibration_steps, processes=processes)
    result["estimate_seconds"] = round(time.perf_counter() - started, 1)
    result["budget"] = None
    if config.budget.active:  # does the run fit its budget as configured? (`train` would plan it to fit)
        from thrifty.cost.budget import BudgetTracker, limits_for
        from thrifty.cost.hardware import hardware_for

        limits = limits_for(config, hardware_for(config.cost))
        total_flops = result["train_flops"] + result["eval_flops"] + result["cache_flops"]
        fits = BudgetTracker(limits).over(result["predicted_seconds"], total_flops) is None  # nothing spent yet
        result["budget"] = {"limit_seconds": limits.seconds, "limit_flops": limits.flops, "fits": fits}
    return result


@dataclass
class _Work:
    """The arithmetic of a run, counted from its measured shape (cost/shape.py): what estimate_shape times."""

    eval_batch_size: int
    lengths: list[int]
    batches: list[list[int]]
    widths: list[tuple[int, int]]  # (examples, padded length) of each training batch
    cached_layers: int  # layers the training loop computes once and then skips, as it will
    flops: Any  # the model's FLOP counts (cost/flops.py)
    steps_per_epoch: int
    total_steps: int
    epochs_run: float
    val_widths: list[tuple[int, int]] = field(default_factory=list)
    train_sorted_widths: list[tuple[int, int]] = field(default_factory=list)  # the training texts as the cache reads them
    test_widths: list[tuple[int, int]] = field(default_factory=list)
    train_flops_epoch: float = 0.0
    cache_flops: float = 0.0
    evaluations: int = 0
    eval_each_flops: float = 0.0
    test_flops: float = 0.0
    eval_flops: float = 0.0
    memory: Any = None  # cost/memory.py's training_memory

    def sorted_widths(self, seq) -> list[tuple[int, int]]:
        """Evaluation and the frozen-layer cache pad sorted batches of eval_batch_size (`seq`: the token lengths)."""
        from thrifty.data.batching import sorted_batches

        seq = list(seq)
        return [(len(idx), max(seq[i] for i in idx)) for idx in sorted_batches(seq, self.eval_batch_size)]

    def forward_flops(self, pairs, frozen_only: bool = False) -> float:
        rate = self.flops.frozen_forward_flops if frozen_only else self.flops.forward_flops
        return sum(size * rate([width]) for size, width in pairs)


def estimate_prepared(config: Config, inputs, *, calibration: Optional[dict[str, Any]] = None,
                      calibration_steps: int = CALIBRATION_STEPS, hardware=None, processes: int = 1,
                      shape: Optional[RunShape] = None) -> dict[str, Any]:
    """The estimate for prepared inputs (`recipe.prepare_inputs`): their shape measured (or the `shape` given, measured
    from them) and, on a CPU, the seconds per FLOP timed on a few of their real batches. A given `calibration` (from
    an earlier estimate on this machine) is reused instead of timing steps again. The model is left as it was found:
    calibration steps are undone (weights, optimizer-free) and the random state is restored."""
    from thrifty.cost.hardware import hardware_for

    hardware = hardware or hardware_for(config.cost)
    with last_layer_pruned(inputs.model, prunes(config, inputs)) as pruned:
        shape = shape or measured(config, inputs, processes)
        if hardware.kind == "cpu" and calibration is None:
            calibration = _calibration(config, inputs, shape, calibration_steps, pruned)
    return estimate_shape(shape, hardware, calibration=calibration, currency=config.cost.currency)


def estimate_shape(shape: RunShape, hardware, *, calibration: Optional[dict[str, Any]] = None,
                   currency: str = "USD") -> dict[str, Any]:
    """The estimate of a run of this shape on `hardware`: on a CPU at the `calibration`'s seconds per FLOP (required
    there), on another machine at its profile's rates. No model, no tokens: the planner's candidates come here."""
    work = _work(shape)
    if hardware.kind == "cpu":
        if calibration is None:
            raise ValueError("an estimate on this machine's CPU needs a calibration (estimate_prepared times one)")
        communication, seconds = _cpu_seconds(shape, work, calibration)
    else:
        calibration, communication, seconds = None, 0.0, _device_seconds(shape, work, hardware)
    return _estimate(shape, work, hardware, calibration, communication, currency, *seconds)


def _work(shape: RunShape) -> _Work:
    from thrifty.optimization.schedule import evaluation_steps

    lengths, batches, widths = list(shape.train_lengths), [list(b) for b in shape.batches], shape.widths
    steps_per_epoch = math.ceil(len(batches) / shape.gradient_accumulation_steps)
    total_steps = (steps_per_epoch * shape.epochs if not shape.max_steps
                   else min(shape.max_steps, steps_per_epoch * shape.epochs))
    w = _Work(shape.eval_batch_size, lengths, batches, widths, shape.cached_layers, shape.flops,
              steps_per_epoch, total_steps, total_steps / steps_per_epoch)
    w.val_widths = w.sorted_widths(shape.val_lengths)
    w.test_widths = w.sorted_widths(shape.test_lengths) if shape.test_lengths else []
    w.train_sorted_widths = w.sorted_widths(lengths)
    frozen_per_epoch = w.forward_flops(widths, frozen_only=True)
    w.train_flops_epoch = w.flops.batches_train_flops(widths) - frozen_per_epoch
    w.cache_flops = (w.forward_flops(w.train_sorted_widths, frozen_only=True)
                     + w.forward_flops(w.val_widths, frozen_only=True))
    # An evaluation at every epoch end (or every eval_every_steps, and at the last step); the best model's
    # validation metrics are kept, not recomputed; the test set is evaluated once, without the cache.
    w.evaluations = len(evaluation_steps(total_steps, steps_per_epoch, shape.eval_every_steps,
                                         shape.evaluations_per_epoch))
    w.eval_each_flops = w.forward_flops(w.val_widths) - w.forward_flops(w.val_widths, frozen_only=True)
    if shape.embeds_train_before_evaluation:  # fewshot: the head is fitted on the training embeddings
        w.eval_each_flops += w.forward_flops(w.sorted_widths(lengths))
        if shape.unlabelled_lengths:  # and self-training labels the unlabelled texts first
            w.eval_each_flops += w.forward_flops(w.sorted_widths(shape.unlabelled_lengths))
    w.test_flops = w.forward_flops(w.test_widths)
    w.eval_flops = w.evaluations * w.eval_each_flops + w.test_flops
    w.memory = shape.memory
    return w


def _calibration(config: Config, inputs, shape: RunShape, calibration_steps: int, pruned: bool) -> dict[str, Any]:
    """Seconds per FLOP on this machine's CPU, for the shape's batches (kept, or timed now). N processes: each runs
    its share of every batch on cores / N threads, so that is what is timed."""
    w, n = _work(shape), shape.processes
    threads = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    try:
        return _kept_or_new_calibration(config, inputs, [b[::n] for b in w.batches], w.flops, calibration_steps,
                                        w.forward_flops, w.sorted_widths, w.widths, w.cached_layers, pruned)
    finally:
        torch.set_num_threads(threads)


def _cpu_seconds(shape: RunShape, w: _Work,
                 calibration: dict[str, Any]) -> tuple[float, tuple[float, float, float, float]]:
    """This machine's CPU: FLOPs at the rate calibrated here. Returns the seconds a step spends adding up gradients
    between processes, and the seconds of training, of one evaluation, of the test and of the frozen-layer cache."""
    # FLOPs at the calibrated rate, plus the loop's own bookkeeping (logs, TensorBoard, keeping the best
    # weights): invisible for real models, most of the time for tiny ones. N processes share the FLOPs of
    # training and evaluation, each at its own rate, and add up their gradients once a step.
    trainable, n, communication = shape.trainable_parameters, shape.processes, 0.0
    if n > 1:
        communication = (2 * (n - 1) / n * trainable * 4 / GLOO_BYTES_PER_SECOND
                         + COLLECTIVES_PER_STEP * COLLECTIVE_SECONDS)
    train_seconds = (w.train_flops_epoch / n * w.epochs_run * calibration["seconds_per_train_flop"]
                     + w.total_steps * (STEP_OVERHEAD_SECONDS + communication))
    eval_each_seconds = (w.eval_each_flops / n * calibration["seconds_per_forward_flop"] + EVAL_OVERHEAD_SECONDS
                         + trainable * 4 / COPY_BYTES_PER_SECOND)
    test_seconds = w.test_flops / n * calibration["seconds_per_forward_flop"]
    cache_seconds = w.cache_flops * calibration["seconds_per_forward_flop"]  # each process builds the whole cache
    return communication, (train_seconds, eval_each_seconds, test_seconds, cache_seconds)


def _device_seconds(shape: RunShape, w: _Work, hardware) -> tuple[float, float, float, float]:
    """Another machine: each batch takes the longer of its FLOPs at peak x efficiency and the host's launch time.
    The seconds of training, of one evaluation, of the test and of the frozen-layer cache."""
    layers, n = shape.layers, shape.processes
    live, flops = layers - w.cached_layers, w.flops
    frozen_rate = flops.frozen_forward_flops
    train_seconds = w.epochs_run * sum(
        hardware.train_step_seconds(flops.batches_train_flops([(size, width)]) - size * frozen_rate([width]), live)
        for size, width in w.widths)
    eval_each_seconds = sum(hardware.forward_seconds(size * (flops.forward_flops([width]) - frozen_rate([width])), live)
                            for size, width in w.val_widths)
    test_seconds = sum(hardware.forward_seconds(size * flops.forward_flops([width]), layers)
                       for size, width in w.test_widths)
    cache_seconds = sum(hardware.forward_seconds(size * frozen_rate([width]), w.cached_layers)
                        for size, width in w.train_sorted_widths + w.val_widths) if w.cached_layers else 0.0
    # N GPUs: each does 1/N of the work; what NCCL adds is not modelled (said in the time line)
    return train_seconds / n, eval_each_seconds / n, test_seconds / n, cache_seconds


def _estimate(shape: RunShape, w: _Work, hardware, calibration: Optional[dict[str, Any]], communication: float,
              currency: str, train_seconds: float, eval_each_seconds: float, test_seconds: float,
              cache_seconds: float) -> dict[str, Any]:
    """The estimate: the work, its time and price, and whether it fits the device's memory."""
    from thrifty.cost.hardware import price

    eval_seconds = w.evaluations * eval_each_seconds + test_seconds
    predicted = train_seconds + eval_seconds + cache_seconds
    cost = price(predicted, hardware)
    if cost is not None:
        cost_note = (f"{predicted / 3600:.3f} h x {hardware.machine_price_per_hour:.4g} {currency}/h "
                     f"({hardware.name}: {hardware.instance}, price as of {hardware.as_of}; set cost.price_per_hour for yours)")
    else:
        cost_note = f"no price for hardware '{hardware.name}': set cost.price_per_hour (the machine's price per hour)"
    fits = None if hardware.memory_gib is None else w.memory.total <= hardware.memory_gib * 2**30
    return {
        "model": shape.model_name, "strategy": shape.strategy_name, "precision": shape.precision,
        "total_parameters": shape.total_parameters, "trainable_parameters": shape.trainable_parameters,
        "examples": len(shape.train_lengths), "tokens_per_epoch": int(sum(w.lengths)),
        "padded_tokens_per_epoch": int(sum(size * width for size, width in w.widths)),
        "max_length": shape.max_length, "steps": w.total_steps, "steps_per_epoch": w.steps_per_epoch,
        "epochs": round(w.epochs_run, 3), "evaluations": w.evaluations,
        "eval_every_steps": shape.eval_every_steps, "evaluations_per_epoch": shape.evaluations_per_epoch,
        "train_flops_per_epoch": w.train_flops_epoch, "train_flops": w.train_flops_epoch * w.epochs_run,
        "eval_flops": w.eval_flops, "eval_flops_each": w.eval_each_flops, "cache_flops": w.cache_flops,
        "peak_memory_bytes": w.memory.total, "memory": w.memory.as_dict(), "fits_memory": fits,
        "fsdp_to_fit": _fsdp_to_fit(shape, w, hardware) if fits is False else None,
        "calibration": calibration,
        "predicted_seconds": round(predicted, 1),
        "predicted": {"training_seconds": round(train_seconds, 2), "evaluation_seconds": round(eval_seconds, 2),
                      "frozen_cache_seconds": round(cache_seconds, 2),
                      "seconds_per_step": train_seconds / max(1, w.total_steps),
                      "seconds_per_evaluation": eval_each_seconds, "test_seconds": test_seconds},
        "frozen_cache": {"layers": w.cached_layers, "flops": w.cache_flops} if w.cached_layers else None,
        "hardware": hardware.as_dict(),
        "processes": shape.processes, "communication_seconds_per_step": round(communication, 4),
        "cost": None if cost is None else float(f"{cost:.4g}"), "currency": currency, "cost_note": cost_note,
    }


def _fsdp_to_fit(shape: RunShape, w: _Work, hardware) -> Optional[dict[str, Any]]:
    """A model that does not fit one device: the fewest devices that hold it sharded (FSDP), each with its share;
    None when its strategy may not be sharded or not even 16 would hold it."""
    if not shape.shards:
        return None
    for k in (2, 4, 8, 16):  # measured unpruned, as before
        m = shape.memory_probe(shape.batch_size, max(width for _, width in w.widths), k, True, False)
        if m.total <= hardware.memory_gib * 2**30:
            return {"processes": k, "peak_memory_bytes_per_process": m.total}
    return None


def _kept_or_new_calibration(config, inputs, batches, flops, steps, forward_flops, sorted_widths, widths,
                             cached_layers: int, pruned: bool) -> dict[str, Any]:
    """The calibration kept for this machine, model, strategy and batch shape (cost/calibration_cache.py), or a
    new one, timed now and kept."""
    from thrifty.cost.calibration_cache import calibration_key, load_calibration, save_calibration
    from thrifty.models.allocator import keep_freed_memory

    tc = config.train
    kept_memory = keep_freed_memory()  # as training runs (models/allocator.py): steps are timed as they will run
    key = calibration_key(inputs.model, task=config.task, strategy=inputs.strategy.name,
                          trainable_parameters=inputs.strategy.trainable_parameters,
                          batch_size=max(len(b) for b in batches),  # a process's share of the batch
                          eval_batch_size=tc.eval_batch_size, max_width=max(w for _, w in widths),
                          cached_layers=cached_layers, pruned=pruned, max_grad_norm=tc.max_grad_norm,
                          precision=cpu_precision(config).name, fast_dropout=tc.fast_dropout,
                          kept_memory=kept_memory)
    if config.cost.reuse_calibration:
        kept = load_calibration(key)
        if kept is not None:
            return kept
    calibration = _calibrate(inputs.model, config, inputs, batches, flops, steps, forward_flops, sorted_widths)
    save_calibration(key, calibration)
    return calibration


def _timed_steps(model, config: Config, inputs, sample: list, flops, optimizer, autocast) -> tuple[float, list[float]]:
    """Training steps on the batches of `sample` (the first a warm-up): their seconds, and seconds per FLOP each."""
    tc, task, pad_id = config.train, inputs.task, inputs.tokenizer.pad_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    timed, rates = 0.0, []
    for k, idx in enumerate(sample):
        t0 = time.perf_counter()
        batch = task.collate(inputs.train, idx, pad_id)
        labels = batch.pop("labels")
        with autocast():
            output = model(**batch)
        loss = task.loss(task.loss_inputs(output), labels)
        loss.backward()
        if tc.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, tc.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if k > 0:  # the first step pays one-off allocations
            seconds = time.perf_counter() - t0
            timed += seconds
            rates.append(seconds / max(flops.batches_train_flops([(len(idx), batch["input_ids"].shape[1])]), 1.0))
    return timed, rates


def cpu_precision(config: Config):
    """What a run of `config` computes in on this machine's CPU (models/precision.py: bf16 autocast where the CPU has
    bf16 instructions and train.precision is auto or bf16)."""
    from thrifty.models.precision import training_precision

    return training_precision(config.train.precision, torch.device("cpu"), config.task)


def _calibrate(model, config, inputs, batches, flops, steps, forward_flops, sorted_widths) -> dict[str, Any]:
    """Seconds per FLOP on this machine's CPU, in the precision the run will compute in (bf16 autocast where
    train.precision resolves to it): a few real training steps (after a warm-up) and a forward pass."""
    from thrifty.data.batching import collate, sorted_batches
    from thrifty.models import fast_dropout
    from thrifty.optimization.optim import make_optimizer

    tc, pad_id = config.train, inputs.tokenizer.pad_token_id
    train_ids, val_ids = inputs.train_ids, inputs.val_ids
    saved_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_rng = torch.get_rng_state()
    optimizer = make_optimizer(model, config.learning_rate, tc.weight_decay, torch.device("cpu"))
    model.train()
    # Warm up on the widest batch, so that the allocator already holds the largest buffers the timed steps need.
    widest = max(batches, key=lambda idx: max(len(train_ids[i]) for i in idx))
    sample = [widest] + batches[:steps]
    dtype = cpu_precision(config).autocast_dtype
    autocast = lambda: torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)  # noqa: E731
    if tc.fast_dropout:  # the steps as training runs them (undone below)
        fast_dropout.enable(model, torch.device("cpu"))
    try:
        timed, rates = _timed_steps(model, config, inputs, sample, flops, optimizer, autocast)
    finally:
        fast_dropout.disable(model)
    # The median step: a cold first process (thread pool, allocator) made one step of four 40% slow once.
    seconds_per_train_flop = float(np.median(rates))
    probe = (val_ids + train_ids)[: 2 * tc.eval_batch_size]

    def forward_all(ids) -> None:  # evaluation's work: sorted batches, no gradients
        model.eval()
        with torch.inference_mode(), autocast():
            for idx in sorted_batches([len(x) for x in ids], tc.eval_batch_size):
                model(**collate(ids, idx, pad_id))

    forward_all(probe[: tc.eval_batch_size])  # warm-up
    t0 = time.perf_counter()
    forward_all(probe)
    seconds_per_forward_flop = (time.perf_counter() - t0) / max(forward_flops(sorted_widths([len(x) for x in probe])),
                                                                1.0)
    model.load_state_dict(saved_weights)  # the steps above trained the model: undo them
    torch.set_rng_state(saved_rng)
    model.train()
    return {"steps": len(sample) - 1, "seconds": round(timed, 3), "threads": torch.get_num_threads(), "cached": False,
            "train_flops_per_second": round(1 / seconds_per_train_flop),
            "forward_flops_per_second": round(1 / seconds_per_forward_flop),
            "seconds_per_train_flop": seconds_per_train_flop, "seconds_per_forward_flop": seconds_per_forward_flop}


def format_estimate(e: dict[str, Any]) -> str:
    gib = 2**30
    m, hw = e["memory"], e["hardware"]
    return "\n".join([
        f"model {e['model']}, strategy {e['strategy']}: {e['total_parameters'] / 1e6:.2f}M parameters, "
        f"{e['trainable_parameters'] / 1e6:.3f}M trainable",
        f"data: {e['examples']} examples, {e['tokens_per_epoch']:,} real tokens per epoch "
        f"({e['padded_tokens_per_epoch']:,} with padding), max_length {e['max_length']}",
        f"work: {e['steps']} steps over {e['epochs']:g} epochs = {e['train_flops'] / 1e12:.2f} TFLOP of training "
        f"+ {e['eval_flops'] / 1e12:.2f} TFLOP for {e['evaluations']} evaluations"
        + (" and the test set" if e["predicted"]["test_seconds"] else ""),
        f"memory: {e['peak_memory_bytes'] / gib:.2f} GiB peak{' per process' if e.get('processes', 1) > 1 else ''} = "
        f"weights {m['weights'] / gib:.2f} + gradients {m['gradients'] / gib:.2f} + AdamW {m['optimizer'] / gib:.2f} + "
        f"activations {m['activations'] / gib:.2f}"
        + (f" + layers gathered whole {m['gathered'] / gib:.2f} (FSDP: the rest sharded over {e['processes']})"
           if m.get("gathered") else ""),
        _time_line(e),
        "cost: " + ("" if e["cost"] is None else f"{e['cost']:.4f} {e['currency']} = ") + e["cost_note"],
    ] + ([_budget_line(e["budget"])] if e.get("budget") else []) + ([f"warning: {e['peak_memory_bytes'] / gib:.1f} GiB will not fit in the {hw['memory_gib']} GiB of {hw['name']}; "
          "use strategy lora or freeze, a smaller train.batch_size or data.max_length"
          + (f", or shard it over {e['fsdp_to_fit']['processes']} of them: --processes "
             f"{e['fsdp_to_fit']['processes']} --train.fsdp true "
             f"({e['fsdp_to_fit']['peak_memory_bytes_per_process'] / gib:.1f} GiB each)" if e.get("fsdp_to_fit") else "")]
         if e.get("fits_memory") is False else []))


def _budget_line(b: dict[str, Any]) -> str:
    limit = ", ".join(p for p in (f"{b['limit_seconds']:.0f} s" if b["limit_seconds"] is not None else "",
                                  f"{b['limit_flops'] / 1e12:.2f} TFLOP" if b["limit_flops"] is not None else "") if p)
    if b["fits"]:
        return f"budget: fits ({limit})"
    return f"budget: does not fit ({limit}); `thrifty train` will plan it to fit (fewer epochs first) and say how"


def _time_line(e: dict[str, Any]) -> str:
    hw, cal = e["hardware"], e["calibration"]
    if cal is not None:
        how = (f"calibrated here{' (kept from ' + str(cal.get('measured_at')) + ')' if cal.get('cached') else ''}: "
               f"{cal['train_flops_per_second'] / 1e9:.1f} GFLOP/s training, "
               f"{cal['forward_flops_per_second'] / 1e9:.1f} GFLOP/s inference in {e.get('precision', 'fp32')}, "
               f"{cal['threads']} threads")
        where = f"this machine ({hw['cores']} cpu cores)"
    else:
        how = (f"{hw['peak_tflops']:g} TFLOP/s peak x {hw['efficiency']:g} efficiency, at least "
               "the host's launch time per layer")
        where = f"{hw['name']} ({hw['description']})"
    n = e.get("processes", 1)
    if n > 1:
        where += (f" in {n} processes, {e['communication_seconds_per_step'] * 1000:.0f} ms a step adding up gradients"
                  if cal is not None else f" in {n} processes (the time to add up gradients between GPUs not counted)")
    return f"time: {e['predicted_seconds']:.0f} s predicted on {where} ({how})"
