"""`thrifty estimate`: what a run will cost before it starts, from the real data and a short calibration.

The arithmetic (parameters, tokens, FLOPs, memory) is counted from the configured model, strategy and the
real tokenised data, with the same batches the training loop will use. The time comes from timing a few
real training steps on this machine (after one warm-up step) and a forward pass over validation texts,
converted to seconds per FLOP, then scaled to every step and every evaluation of the run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

import torch

from thrifty.config import Config

CALIBRATION_STEPS = 4


def estimate(config: Config | str | Path | dict | None = None, overrides: Optional[list[str]] = None,
             calibration_steps: int = CALIBRATION_STEPS) -> dict[str, Any]:
    from thrifty.cost.flops import flop_model
    from thrifty.cost.memory import training_memory
    from thrifty.data.batching import collate, sorted_batches, training_batches
    from thrifty.evaluation.evaluate import predict_logits
    from thrifty.models import first_token
    from thrifty.models.loading import resolve_model
    from thrifty.training.feature_cache import FrozenFeatureCache
    from thrifty.training.optim import make_optimizer
    from thrifty.training.recipe import _as_config, prepare_inputs

    config = _as_config(config, overrides)
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    started = time.perf_counter()
    inputs = prepare_inputs(config, resolve_model(config.model.name))
    data, tokenizer, model, strategy = inputs.data, inputs.tokenizer, inputs.model, inputs.strategy
    max_length, train_ids, val_ids = inputs.max_length, inputs.train_ids, inputs.val_ids
    if tc.prune_last_layer:
        first_token.enable(model)

    # ---- Arithmetic, counted from the real batches of one epoch.
    lengths = [len(x) for x in train_ids]
    batches = training_batches(lengths, tc.batch_size, tc.seed, 0, tc.group_by_length)
    widths = [(len(idx), max(lengths[i] for i in idx)) for idx in batches]
    # Layers the training loop computes once and then skips, as it will.
    cached_layers = FrozenFeatureCache.layers_to_cache(config.strategy.name, tc.cache_frozen_layers, strategy.details, model)
    flops = flop_model(model, frozen_layers=cached_layers)
    steps_per_epoch = math.ceil(len(batches) / tc.gradient_accumulation_steps)
    total_steps = steps_per_epoch * tc.epochs if not tc.max_steps else min(tc.max_steps, steps_per_epoch * tc.epochs)
    epochs_run = total_steps / steps_per_epoch
    def sorted_widths(ids):  # evaluation and the frozen-layer cache pad sorted batches of eval_batch_size
        seq = [len(x) for x in ids]
        return [(len(idx), max(seq[i] for i in idx)) for idx in sorted_batches(seq, tc.eval_batch_size)]

    def forward_flops(pairs, frozen_only=False):
        rate = flops.frozen_forward_flops if frozen_only else flops.forward_flops
        return sum(size * rate([width]) for size, width in pairs)

    val_widths = sorted_widths(val_ids)
    frozen_per_epoch = forward_flops(widths, frozen_only=True)
    train_flops_epoch = flops.batches_train_flops(widths) - frozen_per_epoch
    cache_flops = forward_flops(sorted_widths(train_ids), frozen_only=True) + forward_flops(val_widths, frozen_only=True)
    evaluations = (math.floor(total_steps / tc.eval_every_steps) if tc.eval_every_steps else math.ceil(epochs_run)) + 1
    eval_flops = evaluations * (forward_flops(val_widths) - forward_flops(val_widths, frozen_only=True))
    memory = training_memory(model, tc.batch_size, max(w for _, w in widths))

    # ---- Calibration: a few real steps (after a warm-up step) and a forward pass, on this machine.
    optimizer = make_optimizer(model, config.learning_rate, tc.weight_decay, torch.device("cpu"))
    model.train()
    sample = batches[: calibration_steps + 1]
    timed_flops, timed = 0.0, 0.0
    for k, idx in enumerate(sample):
        batch = collate(train_ids, idx, tokenizer.pad_token_id, data.train.labels)
        labels = batch.pop("labels")
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if k > 0:  # the first step pays one-off allocations
            timed += time.perf_counter() - t0
            timed_flops += flops.batches_train_flops([(len(idx), batch["input_ids"].shape[1])])  # no cache here
    seconds_per_train_flop = timed / max(timed_flops, 1.0)
    probe = (val_ids + train_ids)[: 2 * tc.eval_batch_size]
    predict_logits(model, probe[: tc.eval_batch_size], tokenizer.pad_token_id, tc.eval_batch_size, torch.device("cpu"))  # warm-up
    t0 = time.perf_counter()
    predict_logits(model, probe, tokenizer.pad_token_id, tc.eval_batch_size, torch.device("cpu"))
    seconds_per_forward_flop = (time.perf_counter() - t0) / max(forward_flops(sorted_widths(probe)), 1.0)

    train_seconds = train_flops_epoch * epochs_run * seconds_per_train_flop
    eval_seconds = eval_flops * seconds_per_forward_flop
    cache_seconds = cache_flops * seconds_per_forward_flop
    predicted = train_seconds + eval_seconds + cache_seconds
    result = {
        "model": config.model.name, "strategy": strategy.name,
        "total_parameters": strategy.total_parameters, "trainable_parameters": strategy.trainable_parameters,
        "examples": len(train_ids), "tokens_per_epoch": int(sum(lengths)),
        "padded_tokens_per_epoch": int(sum(size * width for size, width in widths)),
        "max_length": max_length, "steps": total_steps, "epochs": round(epochs_run, 3), "evaluations": evaluations,
        "train_flops_per_epoch": train_flops_epoch, "train_flops": train_flops_epoch * epochs_run,
        "eval_flops": eval_flops, "peak_memory_bytes": memory.total, "memory": memory.as_dict(),
        "calibration": {"steps": len(sample) - 1, "seconds": round(timed, 3),
                        "train_flops_per_second": round(1 / seconds_per_train_flop), "threads": torch.get_num_threads(),
                        "forward_flops_per_second": round(1 / seconds_per_forward_flop)},
        "predicted_seconds": round(predicted, 1),
        "predicted": {"training_seconds": round(train_seconds, 1), "evaluation_seconds": round(eval_seconds, 1),
                      "frozen_cache_seconds": round(cache_seconds, 1)},
        "frozen_cache": {"layers": cached_layers, "flops": cache_flops} if cached_layers else None,
        "hardware": "this machine (cpu)",
        "cost": None,
        "cost_note": "prices are not configured yet: multiply predicted_seconds by your machine's price",
        "estimate_seconds": round(time.perf_counter() - started, 1),
    }
    return result


def format_estimate(e: dict[str, Any]) -> str:
    gib = 2**30
    m = e["memory"]
    return "\n".join([
        f"model {e['model']}, strategy {e['strategy']}: {e['total_parameters'] / 1e6:.2f}M parameters, "
        f"{e['trainable_parameters'] / 1e6:.3f}M trainable",
        f"data: {e['examples']} examples, {e['tokens_per_epoch']:,} real tokens per epoch "
        f"({e['padded_tokens_per_epoch']:,} with padding), max_length {e['max_length']}",
        f"work: {e['steps']} steps over {e['epochs']:g} epochs = {e['train_flops'] / 1e12:.2f} TFLOP of training "
        f"+ {e['eval_flops'] / 1e12:.2f} TFLOP for {e['evaluations']} evaluations",
        f"memory: {e['peak_memory_bytes'] / gib:.2f} GiB peak = weights {m['weights'] / gib:.2f} + gradients "
        f"{m['gradients'] / gib:.2f} + AdamW {m['optimizer'] / gib:.2f} + activations {m['activations'] / gib:.2f}",
        f"time: {e['predicted_seconds']:.0f} s predicted on {e['hardware']} (calibrated: "
        f"{e['calibration']['train_flops_per_second'] / 1e9:.1f} GFLOP/s training, "
        f"{e['calibration']['forward_flops_per_second'] / 1e9:.1f} GFLOP/s inference, "
        f"{e['calibration']['threads']} threads)",
        f"cost: {e['cost_note']}",
    ])
