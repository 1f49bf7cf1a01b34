"""`thrifty train`: from a config to a fine-tuned, evaluated model in a run folder.

Read it top to bottom: config and run folder -> data -> model, tokenizer and strategy -> optimiser ->
(resume) -> the training loop -> best model restored, evaluated, saved. There is no framework underneath:
the loop below is the whole of training, which is what lets later features (cost budgets, cached frozen
layers, hyperparameter search, multi-GPU through Accelerate) change it without a rewrite.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from thrifty.cost import budget as budget_mod
from thrifty.cost.energy import EnergyMeter
from thrifty.cost.hardware import get_hardware
from thrifty.config import (
    BUILTIN_DATA, Config, apply_overrides, config_from_dict, dump_config, load_config, load_yaml,
)
from thrifty.data.batching import collate, training_batches
from thrifty.data.prepare import format_report, prepare_data
from thrifty.data.token_cache import TokenCache
from thrifty.data.tokenize import encode, length_stats, resolve_max_length, token_lengths
from thrifty.errors import ConfigError, Interrupted, RunDirError
from thrifty.evaluation.evaluate import evaluate_split
from thrifty.evaluation.metrics import is_better, summary
from thrifty.evaluation.plots import plot_confusion_matrix
from thrifty.models import first_token
from thrifty.models.loading import cache_dir, load_classifier, load_tokenizer, resolve_model
from thrifty.strategies import apply_strategy
from thrifty.training import checkpoint as ckpt
from thrifty.training.feature_cache import FrozenFeatureCache
from thrifty.training.optim import linear_warmup_decay, make_optimizer, warmup_steps_for
from thrifty.training.schedule import evaluation_steps
from thrifty.training.run_dir import (
    check_new_run_dir, create_run_dir, read_status, set_status, write_json, writing,
)

CONFIG_FILE = "config.yaml"
_FEATURE_MEMO: dict[str, Any] = {}  # the last frozen-layer features computed in this process (see train)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


def _log(message: str) -> None:
    print(message, flush=True)


def _as_config(config: Config | str | Path | dict | None, overrides: Optional[list[str]]) -> Config:
    """Accept a Config, a dict shaped like the YAML, a YAML path, or None (built-in defaults)."""
    if isinstance(config, Config):
        return apply_overrides(copy.deepcopy(config), overrides)
    if isinstance(config, dict):
        return apply_overrides(config_from_dict(config), overrides)
    return load_config(config, overrides)


def _resolved_for_saving(config: Config, run_dir: Path) -> Config:
    """Absolute paths, so the saved config (and --resume) works from any folder."""
    saved = copy.deepcopy(config)
    for key in ("train", "validation", "test"):
        value = getattr(saved.data, key)
        if value and value != BUILTIN_DATA:
            setattr(saved.data, key, str(Path(value).expanduser().resolve()))
    if Path(saved.model.name).expanduser().exists():
        saved.model.name = str(Path(saved.model.name).expanduser().resolve())
    saved.output.dir = str(run_dir.resolve())
    return saved


@dataclass
class Inputs:
    """Everything a run starts from, before any training: shared by `train` and `estimate`."""

    data: Any  # PreparedData
    tokenizer: Any
    model: Any  # with the strategy applied
    strategy: Any
    tokens: TokenCache
    max_length: int
    max_length_how: str
    train_ids: list
    val_ids: list
    test_ids: Optional[list]


def prepare_inputs(config: Config, model_path: str) -> Inputs:
    """Read, clean and split the data (with its report), load the model and tokenizer, tokenise (through the
    on-disk token cache), and apply the strategy."""
    data = prepare_data(config.data, config.train.seed)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    model, new_keys = load_classifier(
        model_path, data.label_names, dropout=config.train.dropout,
        trust_remote_code=config.model.trust_remote_code, pad_token_id=tokenizer.pad_token_id,
    )
    tokens = TokenCache(cache_dir() / "tokens" if config.data.cache_tokens else None, tokenizer)
    max_length, train_len_stats, how = resolve_max_length(
        tokenizer, model.config, data.train.texts, config.data.max_length, config.data.length_percentile,
        lengths=tokens.lengths(data.train.texts, token_lengths),
    )
    train_ids = tokens.encode(data.train.texts, max_length, encode)
    val_ids = tokens.encode(data.validation.texts, max_length, encode)
    test_ids = tokens.encode(data.test.texts, max_length, encode) if data.test is not None else None
    data.report["tokens"] = {
        "max_length": max_length, "chosen": how, "train": train_len_stats,
        "validation": length_stats(tokens.lengths(data.validation.texts, token_lengths), max_length),
        "cache": {"folder": str(tokens.folder) if tokens.folder else None, "hits": tokens.hits, "misses": tokens.misses},
    }
    model, strategy = apply_strategy(model, config.strategy, new_keys)
    return Inputs(data, tokenizer, model, strategy, tokens, max_length, how, train_ids, val_ids, test_ids)


def _precision(config: Config, device: torch.device) -> str:
    wanted = config.train.precision
    if device.type != "cuda":
        if wanted in ("bf16", "fp16"):
            raise ConfigError(f"train.precision={wanted} needs a GPU and this machine has none; use fp32 (or auto)")
        return "no"
    if wanted == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": "no"}.get(wanted, wanted)


class _StopFlag:
    """Ctrl-C / SIGTERM set a flag; the loop stops at the next step boundary with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping at the next step boundary (Ctrl-C again to abort at once) ...", file=sys.stderr, flush=True)

    def __enter__(self) -> "_StopFlag":
        with contextlib.suppress(ValueError):  # signals can only be set from the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(
    config: Config | str | Path | dict | None = None,
    *,
    output: Optional[str | Path] = None,
    overrides: Optional[list[str]] = None,
    resume: Optional[str | Path] = None,
    overwrite: bool = False,
    progress: bool = True,
    clock_start: Optional[float] = None,
    on_evaluation: Optional[Callable[[int, dict[str, Any]], bool]] = None,
    mlflow_parent_run_id: Optional[str] = None,
    evaluate_test: bool = True,
) -> RunResult:
    """Fine-tune a classifier. The Python twin of ``thrifty train``; returns the run folder and metrics.
    `clock_start` (a `time.perf_counter()` value) starts the budget's clock earlier, e.g. when the command began.
    `on_evaluation(n, metrics)` is called after the n-th validation (n from 1); returning True stops the run there
    (`thrifty tune` prunes poor trials this way), keeping the best model so far like any other stop.
    `mlflow_parent_run_id` nests this run's MLflow run under another (the trials of a search).
    `evaluate_test=False` reads the test set (so that its texts are kept out of training, as always) but does
    not evaluate it: a search must not look at it."""
    wall_start = clock_start if clock_start is not None else time.perf_counter()

    # ---- 0. Config and run folder. Problems here are found before any expensive work.
    if resume is not None:
        run_dir = Path(resume).expanduser()
        if not (run_dir / CONFIG_FILE).exists():
            raise RunDirError(f"cannot resume {run_dir}: it has no {CONFIG_FILE}; give the folder of an earlier `thrifty train`")
        if read_status(run_dir).get("status") == "complete":
            raise RunDirError(f"{run_dir} is already complete; nothing to resume (start a new run with another --output)")
        checkpoint_path = ckpt.find_checkpoint(run_dir)
        if checkpoint_path is None:
            raise RunDirError(f"{run_dir} has no checkpoint to resume from (it stopped before the first one); start it again with --overwrite")
        config = config_from_dict(load_yaml(run_dir / CONFIG_FILE))
        if overrides:
            raise ConfigError("a resumed run keeps its saved config; drop the --section.key overrides (or start a new run)")
        config.validate()
    else:
        config = _as_config(config, overrides)
        if output is not None:
            config.output.dir = str(output)
        run_dir = check_new_run_dir(config.output.dir, overwrite)
        checkpoint_path = None
    tc = config.train
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    mixed_precision = _precision(config, torch.device(device_type))
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    model_path = resolve_model(config.model.name)  # a missing model fails here, before the data work
    from transformers import set_seed

    set_seed(tc.seed)

    # ---- 1-2. Data (read, clean, split, report), model, tokenizer, tokens, strategy.
    inputs = prepare_inputs(config, model_path)
    data, tokenizer, model, strategy, tokens = inputs.data, inputs.tokenizer, inputs.model, inputs.strategy, inputs.tokens
    max_length, how = inputs.max_length, inputs.max_length_how
    train_ids, val_ids, test_ids = inputs.train_ids, inputs.val_ids, inputs.test_ids

    _log(format_report(data.report))
    tok = data.report["tokens"]["train"]
    _log(f"tokens: max_length {max_length} ({how}); train mean {tok['mean']}, p99 {tok['p99']}, "
         f"max {tok['max']}; {tok['truncated']} of {tok['count']} texts truncated"
         + (f"; token cache {tokens.hits} hits, {tokens.misses} misses" if tokens.folder else ""))

    # ---- 2b. The budget: time and FLOPs are counted from the start of this command (and of earlier sessions
    # of a resumed run). A run that would not fit is re-planned before it starts (see cost/budget.py).
    tracker = budget_mod.BudgetTracker(budget_mod.limits_for(config, get_hardware("auto", config.cost.price_per_hour)),
                                       started=wall_start)
    planned: Optional[dict[str, Any]] = None
    if config.budget.active and checkpoint_path is None:
        config, inputs, planned = budget_mod.plan(config, inputs, model_path, tracker, _log)
        tc = config.train
        strategy, model, max_length, how = inputs.strategy, inputs.model, inputs.max_length, inputs.max_length_how
        train_ids, val_ids, test_ids = inputs.train_ids, inputs.val_ids, inputs.test_ids

    # ---- 3. The run folder exists only from here on: bad data, a bad model or a hopeless budget leave nothing behind.
    if checkpoint_path is None:
        create_run_dir(run_dir, overwrite)
        with writing(run_dir, CONFIG_FILE):
            dump_config(_resolved_for_saving(config, run_dir), run_dir / CONFIG_FILE)  # as planned
    set_status(run_dir, "running", command="train", resumed=checkpoint_path is not None)
    write_json(run_dir / "data_report.json", data.report)
    _log(strategy.describe())

    # ---- 4. Optimisation: Accelerate places the model and handles mixed precision / (later) processes.
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=device_type == "cpu")
    device = accelerator.device
    optimizer = make_optimizer(model, config.learning_rate, tc.weight_decay, device)
    model, optimizer = accelerator.prepare(model, optimizer)
    trainable_params = [p for p in model.parameters() if p.requires_grad]

    # Frozen layers are a fixed function of the text: compute them once, not once per epoch.
    cache, features, cache_seconds, cache_bytes, cache_reused = None, {}, 0.0, 0, False
    unwrapped_model = accelerator.unwrap_model(model)
    cached_layers = FrozenFeatureCache.layers_to_cache(config.strategy.name, tc.cache_frozen_layers, strategy.details,
                                                       unwrapped_model)
    if cached_layers:
        t0 = time.perf_counter()
        cache = FrozenFeatureCache(unwrapped_model, cached_layers)
        # The frozen layers are pretrained weights run without dropout: the same features for every run of this
        # process on the same texts (hyperparameter trials), so the last ones are kept and reused.
        key = (model_path, cached_layers, hash((tuple(map(tuple, train_ids)), tuple(map(tuple, val_ids)))))
        if _FEATURE_MEMO.get("key") == key:
            features, cache_reused = _FEATURE_MEMO["features"], True
        else:
            _FEATURE_MEMO.clear()  # one set at a time: they can be hundreds of MiB
            features = {"train": cache.compute(train_ids, tokenizer.pad_token_id, tc.eval_batch_size, device),
                        "validation": cache.compute(val_ids, tokenizer.pad_token_id, tc.eval_batch_size, device)}
            _FEATURE_MEMO.update(key=key, features=features)
        cache_seconds = time.perf_counter() - t0
        cache_bytes = sum(f.nbytes for f in features.values())
        _log(f"frozen-layer cache: {cache.frozen_layers} layers, {cache_bytes / 2**20:.1f} MiB, "
             f"built in {cache_seconds:.1f}s; later epochs skip those layers")
    # After the cache (which stores every position): the head reads only the first token of the last layer.
    if tc.prune_last_layer and first_token.enable(unwrapped_model):
        _log("last layer computed for the first token only (the only position the classifier reads)")

    train_lengths = [len(ids) for ids in train_ids]
    batches_per_epoch = math.ceil(len(train_ids) / tc.batch_size / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_epoch / tc.gradient_accumulation_steps)
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total_steps = min(total_steps, tc.max_steps)
    warmup = warmup_steps_for(total_steps, tc.warmup_ratio)
    eval_at = set(evaluation_steps(total_steps, steps_per_epoch, tc.eval_every_steps, tc.evaluations_per_epoch))
    scheduler = linear_warmup_decay(optimizer, warmup, total_steps)
    effective_batch = tc.batch_size * tc.gradient_accumulation_steps * accelerator.num_processes
    _log(f"training: {len(train_ids)} examples x {tc.epochs} epochs = {total_steps} steps of {effective_batch} examples "
         f"(~{effective_batch * tok['mean']:.0f} real tokens/step), warmup {warmup}, lr {config.learning_rate:g}, "
         f"device {device.type}, precision {accelerator.mixed_precision}, threads {torch.get_num_threads()}")

    # ---- 5. Loop state, restored from the checkpoint when resuming.
    state: dict[str, Any] = {
        "global_step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
        "evals_without_improvement": 0, "history": [], "tokens_seen": 0, "padded_tokens_seen": 0,
        "examples_seen": 0, "step_seconds": 0.0, "eval_seconds": 0.0, "stop_reason": None,
        "best_metrics": None, "budget_spent_seconds": 0.0, "budget_flops": 0.0, "plan": planned,
        "last_eval_seconds": None,
    }
    best_weights: Optional[dict[str, torch.Tensor]] = None
    if checkpoint_path is not None:
        trainable, best_weights, saved = ckpt.load_checkpoint(checkpoint_path)
        ckpt.load_trainable_state(accelerator.unwrap_model(model), trainable)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.restore_rng(saved["rng"])
        state.update(saved["loop"])
        tracker.seconds_before, tracker.flops = state["budget_spent_seconds"], state["budget_flops"]
        _truncate_log(run_dir / "train_log.jsonl", state["global_step"])
        _log(f"resumed from step {state['global_step']} (epoch {state['epoch'] + 1})")

    writer = _tensorboard(run_dir, config, purge_step=state["global_step"] if checkpoint_path else None)
    mlf = _mlflow(config, run_dir, strategy, data, mlflow_parent_run_id)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)

    def forward_for(split: str):
        """`(batch, indices) -> logits` for one split: through the frozen-layer cache where there is one."""
        if cache is None:
            return lambda batch, idx: model(**batch).logits
        return lambda batch, idx: cache.forward(model, features[split], idx, batch)

    train_forward, validation_forward = forward_for("train"), forward_for("validation")

    # Budget bookkeeping: FLOPs are counted per real batch only when there is a FLOP limit (counting costs a second).
    recent_step_seconds: list[float] = []
    save_reserve = budget_mod.save_seconds(sum(p.numel() * p.element_size() for p in unwrapped_model.parameters()))
    flops_model = None
    if config.budget.max_flops is not None:
        from thrifty.cost.flops import flop_model

        flops_model = flop_model(unwrapped_model, frozen_layers=cached_layers)

    def step_flop_count(idx) -> float:
        width = max(train_lengths[i] for i in idx)
        return len(idx) * (flops_model.train_flops([width]) - flops_model.frozen_forward_flops([width]))

    eval_flops = 0.0
    if flops_model is not None:
        val_lengths = [len(x) for x in val_ids]
        from thrifty.data.batching import sorted_batches

        if cache is not None and not cache_reused:  # building the cache was work too (again after a resume)
            for ids in (train_ids, val_ids):
                lengths = [len(x) for x in ids]
                tracker.flops += sum(len(b) * flops_model.frozen_forward_flops([max(lengths[i] for i in b)])
                                     for b in sorted_batches(lengths, tc.eval_batch_size))

        eval_flops = sum(len(b) * (flops_model.forward_flops([w]) - flops_model.frozen_forward_flops([w]))
                         for b in sorted_batches(val_lengths, tc.eval_batch_size) for w in [max(val_lengths[i] for i in b)])

    def evaluate_now() -> dict[str, Any]:
        return evaluate_split(model, val_ids, data.validation.labels, data.label_names, tokenizer.pad_token_id,
                              tc.eval_batch_size, device, autocast_dtype, validation_forward)

    def evaluate_and_track(step: int, epoch_done: float) -> float:
        """Evaluate on validation, keep the best weights and metrics, log; returns the tracked metric."""
        nonlocal best_weights
        t_eval = time.perf_counter()
        metrics = evaluate_now()
        state["last_eval_seconds"] = time.perf_counter() - t_eval
        state["eval_seconds"] += state["last_eval_seconds"]
        tracker.flops += eval_flops
        value = metrics[tc.metric]
        improved = is_better(tc.metric, value, state["best_metric"])
        if improved:
            state.update(best_metric=value, best_step=step, evals_without_improvement=0, best_metrics=metrics)
            best_weights = ckpt.trainable_state(accelerator.unwrap_model(model))
        else:
            state["evals_without_improvement"] += 1
        spent = state["step_seconds"] + state["eval_seconds"] + cache_seconds
        state["history"].append({"step": step, "epoch": epoch_done, "accuracy": metrics["accuracy"],
                                 "macro_f1": metrics["macro_f1"], "loss": metrics["loss"],
                                 "seconds": round(spent, 2)})  # training + evaluation so far
        if writer:
            for key in ("accuracy", "macro_f1", "loss"):
                writer.add_scalar(f"validation/{key}", metrics[key], step)
        if mlf:
            mlf.log_metrics({f"validation/{k}": metrics[k] for k in ("accuracy", "macro_f1", "loss")}, step, flush=True)
        bar.write(f"step {step} (epoch {int(math.ceil(epoch_done)) or 1}): validation {summary(metrics)}"
                  + ("  * best" if improved else ""))
        if on_evaluation is not None and on_evaluation(len(state["history"]), metrics):
            state["stop_reason"] = "pruned"
        return value

    def budget_says_stop(idx_group: list) -> Optional[str]:
        """Would this step leave too little budget to evaluate the current weights, test and save?"""
        if not config.budget.active:
            return None
        plan = state["plan"] or {}
        guess = max(recent_step_seconds[-5:]) if recent_step_seconds else plan.get("seconds_per_step", 0.0)
        eval_guess = state["last_eval_seconds"] or plan.get("seconds_per_evaluation", 0.0)
        reserve = eval_guess + plan.get("test_seconds", 0.0) + save_reserve
        step_flops = sum(step_flop_count(idx) for idx in idx_group) if flops_model else 0.0
        return tracker.over(guess + reserve, step_flops + eval_flops)

    def save_checkpoint() -> None:
        state["budget_spent_seconds"] = tracker.spent_seconds  # what this and earlier sessions have spent
        state["budget_flops"] = tracker.flops
        ckpt.save_checkpoint(run_dir, accelerator.unwrap_model(model), best_weights, optimizer, scheduler, state)

    bar = _progress_bar(total_steps, state["global_step"], progress)
    log_file = open(run_dir / "train_log.jsonl", "a", encoding="utf-8")
    # On a GPU every .item() makes the CPU wait for the GPU, so per-step losses stay on the device and are
    # read back together every `sync_every` steps (and before every evaluation, checkpoint and stop).
    # On the CPU there is nothing to wait for: every step is logged as it ends, with its exact time.
    sync_every = tc.sync_every_steps or (1 if device.type == "cpu" else 50)
    pending: list[tuple[dict[str, Any], torch.Tensor, Optional[torch.Tensor]]] = []
    window_start = time.perf_counter()

    def flush_steps() -> None:
        if not pending:
            return
        values = torch.stack([torch.stack([loss, norm if norm is not None else torch.zeros_like(loss)])
                              for _, loss, norm in pending]).tolist()  # the one wait for the device
        elapsed = time.perf_counter() - window_start
        state["step_seconds"] += elapsed
        recent_step_seconds.append(elapsed / len(pending))
        tps = state["tokens_seen"] / max(state["step_seconds"], 1e-9)
        for (record, _, norm), (loss, grad_norm) in zip(pending, values):
            record.update(loss=loss, grad_norm=grad_norm if norm is not None else None,
                          seconds=round(elapsed / len(pending), 4), tokens_per_second=round(tps, 1))
            log_file.write(json.dumps(record) + "\n")
            if writer:
                writer.add_scalar("train/loss", loss, record["step"])
                writer.add_scalar("train/lr", record["lr"], record["step"])
                writer.add_scalar("train/tokens_per_second", tps, record["step"])
            if mlf:
                mlf.log_metrics({"train/loss": loss, "train/lr": record["lr"], "train/grad_norm": record["grad_norm"],
                                 "system/tokens_per_second": tps, "system/spent_seconds": tracker.spent_seconds,
                                 "system/cost_so_far": tracker.cost_so_far(), "system/peak_rss_gib": _peak_rss_gib()},
                                record["step"])
        bar.set_postfix(epoch=pending[-1][0]["epoch"], loss=f"{values[-1][0]:.4f}", tok_s=f"{tps:,.0f}", refresh=False)
        pending.clear()

    pin = device.type == "cuda"
    energy = EnergyMeter(config.cost.country).start() if config.tracking.energy else None
    model.train()
    try:
        with _StopFlag() as stop:
            done = state["global_step"] >= total_steps or state["stop_reason"] is not None
            while not done and state["epoch"] < tc.epochs:
                epoch = state["epoch"]
                # The same (seed, epoch) always gives the same batches; each process takes its share.
                batches = training_batches(train_lengths, tc.batch_size, tc.seed, epoch, tc.group_by_length)
                batches = batches[accelerator.process_index :: accelerator.num_processes]
                accum = tc.gradient_accumulation_steps
                groups = [batches[i : i + accum] for i in range(0, len(batches), accum)]
                for g in range(state["batch_in_epoch"] // accum, len(groups)):
                    reason = budget_says_stop(groups[g])
                    if reason is not None:
                        tracker.stopped_by, state["stop_reason"] = reason, "budget"
                        break
                    if not pending:  # a new timing window: evaluation and checkpoint time stay out of it
                        window_start = time.perf_counter()
                    step_loss = torch.zeros((), device=device)
                    for idx in groups[g]:
                        cpu_batch = collate(train_ids, idx, tokenizer.pad_token_id, data.train.labels)
                        state["tokens_seen"] += int(cpu_batch["attention_mask"].sum())  # counted on the CPU: no wait
                        state["padded_tokens_seen"] += cpu_batch["attention_mask"].numel()
                        state["examples_seen"] += len(idx)
                        batch = {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) for k, v in cpu_batch.items()}
                        labels = batch.pop("labels")
                        with accelerator.autocast():
                            logits = train_forward(batch, idx)
                        loss = torch.nn.functional.cross_entropy(logits.float(), labels) / len(groups[g])
                        accelerator.backward(loss)
                        step_loss += loss.detach()
                    grad_norm = None
                    if tc.max_grad_norm > 0:
                        grad_norm = accelerator.clip_grad_norm_(trainable_params, tc.max_grad_norm).detach()
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    state["global_step"] += 1
                    state["batch_in_epoch"] = min(len(batches), (g + 1) * accum)
                    if flops_model is not None:
                        tracker.flops += sum(step_flop_count(idx) for idx in groups[g])
                    step = state["global_step"]
                    pending.append(({"step": step, "epoch": epoch + 1, "loss": None, "lr": scheduler.get_last_lr()[0]},
                                    step_loss, grad_norm))
                    last_step = step >= total_steps
                    evaluate_due = step in eval_at
                    checkpoint_due = (tc.checkpoint_every_steps and step % tc.checkpoint_every_steps == 0) or (
                        not tc.checkpoint_every_steps and (evaluate_due or last_step))
                    if len(pending) >= sync_every or evaluate_due or last_step or checkpoint_due or stop.requested:
                        flush_steps()
                    _inject_fault(step)
                    bar.update(1)

                    if evaluate_due or last_step:
                        value = evaluate_and_track(step, round(epoch + (g + 1) / len(groups), 3))
                        if (state["stop_reason"] is None and tc.early_stopping_patience
                                and state["evals_without_improvement"] >= tc.early_stopping_patience):
                            state["stop_reason"] = "early_stopping"
                        if tc.stop_at_metric is not None and not is_better(tc.metric, tc.stop_at_metric, value):
                            state["stop_reason"] = "target_reached"  # value is at least as good as the target
                    if last_step and state["stop_reason"] is None:
                        cut_short = total_steps < steps_per_epoch * tc.epochs
                        state["stop_reason"] = "max_steps" if cut_short else "completed"
                    if state["stop_reason"] is not None or stop.requested:
                        break
                    if checkpoint_due:
                        log_file.flush()
                        save_checkpoint()
                if stop.requested and state["stop_reason"] is None:
                    flush_steps()
                    log_file.flush()
                    save_checkpoint()
                    set_status(run_dir, "interrupted", step=state["global_step"])
                    raise Interrupted(f"stopped by the user at step {state['global_step']}; continue with: thrifty train --resume {run_dir}")
                if state["stop_reason"] is not None:
                    break
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            if state["stop_reason"] is None:
                state["stop_reason"] = "completed"
            flush_steps()
            evaluated = [h["step"] for h in state["history"]]
            if state["stop_reason"] == "budget" and (not evaluated or evaluated[-1] != state["global_step"]):
                # The weights trained since the last evaluation may be the best ones: look before keeping the best.
                bar.write(f"budget reached ({tracker.stopped_by}) after {tracker.spent_seconds:.0f} s, at step "
                          f"{state['global_step']}: evaluating the current weights, then keeping the best")
                evaluate_and_track(state["global_step"], round(state["epoch"] + state["batch_in_epoch"] / max(1, len(batches)), 3))
            log_file.flush()
            save_checkpoint()  # the finished loop is resumable too, should saving the model fail below
    except Interrupted:
        if mlf:
            mlf.end("KILLED")
        raise
    except KeyboardInterrupt:
        set_status(run_dir, "interrupted", step=state["global_step"])
        if mlf:
            mlf.end("KILLED")
        raise Interrupted(f"aborted at step {state['global_step']}; continue from the last checkpoint with: thrifty train --resume {run_dir}") from None
    except BaseException:
        set_status(run_dir, "failed", step=state["global_step"])
        if energy:
            energy.stop()
        if mlf:
            mlf.end("FAILED")
        raise
    finally:
        bar.close()
        log_file.close()
        if writer:
            writer.flush()

    # ---- 7. The best model: restored, evaluated on validation (and test, once), saved.
    unwrapped = accelerator.unwrap_model(model)
    if best_weights is not None:
        ckpt.load_trainable_state(unwrapped, best_weights)
    # The best weights were evaluated when they were found; evaluation is deterministic, so no second pass.
    results: dict[str, Any] = {"validation": state["best_metrics"] or evaluate_now()}
    if test_ids is not None and evaluate_test:
        results["test"] = evaluate_split(unwrapped, test_ids, data.test.labels, data.label_names, tokenizer.pad_token_id,
                                         tc.eval_batch_size, device, autocast_dtype)
    wall = time.perf_counter() - wall_start
    # The cache is part of the cost of training: it counts in the throughput, not beside it.
    step_seconds = max(state["step_seconds"] + cache_seconds, 1e-9)
    results["train"] = {
        "seconds": round(wall, 2),
        "step_seconds": round(state["step_seconds"], 2),
        "cache_seconds": round(cache_seconds, 3),
        "frozen_cache": {"layers": cache.frozen_layers, "bytes": cache_bytes} if cache else None,
        "examples": state["examples_seen"],
        "tokens": state["tokens_seen"],
        "tokens_per_second": round(state["tokens_seen"] / step_seconds, 1),
        "examples_per_second": round(state["examples_seen"] / step_seconds, 2),
        "padding_fraction": round(1 - state["tokens_seen"] / max(1, state["padded_tokens_seen"]), 4),
        "steps": state["global_step"],
        "epochs": tc.epochs,
        "stop_reason": state["stop_reason"],
        "resumed": checkpoint_path is not None,
    }
    results["best"] = {"metric": tc.metric, "value": state["best_metric"], "step": state["best_step"],
                       "seconds": next((h["seconds"] for h in state["history"] if h["step"] == state["best_step"]), None)}
    results["history"] = state["history"]
    results["model"] = {"name": config.model.name, "strategy": strategy.name, "total_parameters": strategy.total_parameters,
                        "trainable_parameters": strategy.trainable_parameters, "max_length": max_length,
                        "learning_rate": config.learning_rate,
                        "labels": data.label_names, "device": device.type, "precision": accelerator.mixed_precision}
    if writer:
        for split in ("validation", "test"):
            if split in results:
                writer.add_scalar(f"final/{split}_accuracy", results[split]["accuracy"], state["global_step"])
        writer.close()

    _save_model(run_dir, unwrapped, tokenizer, config, data.label_names, max_length)
    with writing(run_dir, "plots"):
        for split in ("validation", "test"):
            if split in results:
                plot_confusion_matrix(results[split]["confusion_matrix"], data.label_names,
                                      run_dir / f"confusion_matrix_{split}.png", f"{split} ({config.model.name})")
    majority = max(np.bincount(np.asarray(data.validation.labels))) / max(1, len(data.validation.labels))
    results["budget"] = tracker.report(results["validation"]["accuracy"], round(float(majority), 4), state["plan"])
    results["budget"]["energy"] = energy.stop() if energy else None
    write_json(run_dir / "metrics.json", results)  # written last: its presence means the run is complete
    if not config.output.keep_checkpoints:
        import shutil

        shutil.rmtree(run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)
    set_status(run_dir, "complete", step=state["global_step"])
    if mlf:
        _mlflow_finish(mlf, run_dir, results, state["global_step"])
    _log(f"validation: {summary(results['validation'])}")
    if "test" in results:
        _log(f"test: {summary(results['test'])}")
    tr, bu = results["train"], results["budget"]
    _log(f"trained {tr['steps']} steps in {tr['seconds']:.1f}s ({tr['tokens_per_second']:,.0f} real tokens/s, "
         f"padding {100 * tr['padding_fraction']:.1f}%); run folder: {run_dir}")
    _log(budget_mod.format_spent(bu))
    return RunResult(run_dir, results)


def _save_model(run_dir: Path, model, tokenizer, config: Config, label_names: list[str], max_length: int) -> None:
    """The final model in Hugging Face format (safetensors), plus what predict needs to use it."""
    import shutil

    final = run_dir / "model"
    tmp = run_dir / "model.tmp"
    meta = {"base_model": config.model.name, "strategy": config.strategy.name, "labels": label_names,
            "max_length": max_length, "text_column": config.data.text_column, "format": "full"}
    with writing(run_dir, "the model"):
        shutil.rmtree(tmp, ignore_errors=True)
        if config.strategy.name == "lora":
            model.save_pretrained(tmp)  # the adapter and the trained head only: megabytes, not the base model
            if config.strategy.merge_lora:
                shutil.rmtree(run_dir / "adapter", ignore_errors=True)
                tmp.rename(run_dir / "adapter")
                model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
            else:
                meta["format"] = "lora_adapter"
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "thrifty.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)


def _truncate_log(path: Path, last_step: int) -> None:
    """After a resume, steps past the checkpoint are redone: drop their earlier (possibly half-written) lines."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # a line cut by a crash: everything after it is newer than the checkpoint anyway
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _inject_fault(step: int) -> None:
    """Testing hook: THRIFTY_FAULT_AT_STEP="5:KILL" (kill -9) or "3:INT" (Ctrl-C) after that optimizer step."""
    spec = os.environ.get("THRIFTY_FAULT_AT_STEP")
    if not spec:
        return
    at, _, sig = spec.partition(":")
    if int(at) == step:
        os.kill(os.getpid(), {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}[sig or "KILL"])


def _tensorboard(run_dir: Path, config: Config, purge_step: Optional[int]):
    if not config.tracking.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)


def _mlflow(config: Config, run_dir: Path, strategy, data, parent_run_id: Optional[str]):
    """An MLflow run with the config and the data as params, or None (off, not installed, or unreachable)."""
    if not config.tracking.mlflow.enabled:
        return None
    from thrifty.tracking.mlflow_logger import MlflowLogger, flatten

    mlf = MlflowLogger.start(config.tracking.mlflow, run_dir, run_dir.name, parent_run_id)
    if mlf is None:
        return None
    params = {k: v for k, v in flatten("", config.to_dict()).items() if not k.startswith("tracking.mlflow")}
    params.update({"model.total_parameters": strategy.total_parameters,
                   "model.trainable_parameters": strategy.trainable_parameters,
                   "data.train_examples": len(data.train.texts), "data.validation_examples": len(data.validation.texts),
                   "data.labels": len(data.label_names)})
    mlf.log_params(params)
    mlf.log_artifact(run_dir / "data_report.json")
    mlf.log_artifact(run_dir / CONFIG_FILE)
    return mlf


def _mlflow_finish(mlf, run_dir: Path, results: dict[str, Any], step: int) -> None:
    """Final figures and the run's files (model included) as artifacts, then the run is closed."""
    final = {f"final/{split}_{k}": results[split][k] for split in ("validation", "test") if split in results
             for k in ("accuracy", "macro_f1", "loss")}
    b = results["budget"]
    final.update({"final/spent_seconds": b["spent_seconds"], "final/spent_cost": b["spent_cost"],
                  "final/tokens_per_second": results["train"]["tokens_per_second"]})
    mlf.log_metrics(final, step, flush=True)
    mlf.set_tags({"thrifty.stop_reason": results["train"]["stop_reason"],
                  "thrifty.stopped_by_budget": b["stopped_by_budget"]})
    for name in ("metrics.json", "train_log.jsonl", "confusion_matrix_validation.png", "confusion_matrix_test.png"):
        mlf.log_artifact(run_dir / name)
    mlf.log_artifact(run_dir / "model", "model")
    mlf.end()


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, file=sys.stderr)
