"""`thrifty train`: from a config to a fine-tuned, evaluated model in a run folder, for any task.

Read it top to bottom: ``train()`` is setup -> loop -> finish.

- setup: config and run folder (problems found before any expensive work) -> data, model, tokens and strategy
  (inputs/) -> the budget plan -> the run folder -> optimiser, schedule, frozen-layer cache -> the loop state,
  restored from the checkpoint when resuming.
- loop: epochs of length-grouped batches; each step (``train_step``) is forward (the task's loss), backward, clip,
  step. The StopController decides every stop; the RunLogger reports every step and evaluation; the run's
  parallelism (training/distributed.py) is all that knows how many processes share the work.
- finish: the best weights restored, evaluated on test once, saved with a manifest, metrics.json written last.

The task (tasks/) supplies batches, loss and metrics; nothing below names a task. There is no framework
underneath: this file is the whole of training.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from thrifty.config import Config, config_from_dict, dump_config, load_yaml
from thrifty.cost.budget import BudgetTracker, format_spent, limits_for, save_seconds
from thrifty.cost.energy import EnergyMeter
from thrifty.cost.hardware import get_hardware
from thrifty.data.batching import sorted_batches
from thrifty.data.instructions import FORMAT_KEYS
from thrifty.data.prepare import format_report
from thrifty.errors import ConfigError, Interrupted, RunDirError
from thrifty.evaluation.metrics import improves
from thrifty.inputs import Inputs, as_config, prepare_inputs, resolved_for_saving
from thrifty.models import allocator, fast_dropout, first_token
from thrifty.models.feature_cache import FeatureMemo, FrozenFeatureCache
from thrifty.models.loading import resolve_model
from thrifty.models.precision import Precision, training_precision
from thrifty.optimization.optim import linear_warmup_decay, make_optimizer, warmup_steps_for
from thrifty.optimization.schedule import evaluation_steps
from thrifty.planning.budget_plan import plan
from thrifty.runs import checkpoint as ckpt
from thrifty.runs.manifest import (SENTENCE_FORMAT, data_fingerprint, preprocessing, read_manifest, weights_sha256,
                                   write_manifest)
from thrifty.runs.run_dir import check_new_run_dir, create_run_dir, read_status, set_status, write_json, writing
from thrifty.training.distributed import OneProcess, Processes, launched, parallelism
from thrifty.training.logger import RunLogger
from thrifty.training.state import LoopState
from thrifty.training.stopping import StopController, WorkCosts
from thrifty.traits import strategy_traits, task_traits

CONFIG_FILE = "config.yaml"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


@dataclass
class Run:
    """What setup builds and the loop and finish use: fixed for the whole run (the moving parts are LoopState)."""

    config: Config
    run_dir: Path
    model_path: str
    inputs: Inputs
    accelerator: Any
    model: Any  # prepared by Accelerate (the unwrapped one is `accelerator.unwrap_model(model)`)
    optimizer: Any
    scheduler: Any
    trainable: list
    steps_per_epoch: int
    total_steps: int
    eval_at: set
    cache: Optional[FrozenFeatureCache]
    features: dict
    cache_seconds: float
    cache_bytes: int
    precision: Precision  # what the steps compute in, and why (models/precision.py)
    resumed_from: Optional[Path]
    parallel: OneProcess  # how the processes share the work: one, DDP or FSDP2 (training/distributed.py)

    @property
    def tc(self):
        return self.config.train

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return self.precision.autocast_dtype

    @property
    def processes(self) -> Processes:  # rank and world size; one process: Processes(0, 1)
        return self.parallel.processes

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def say(self, message: str) -> None:
        self.processes.say(message)

    def forward(self, split: str) -> Callable:
        """`(batch, indices) -> logits` for one split: through the frozen-layer cache where there is one."""
        # Evaluation runs the bare model: under DDP every forward of the wrapper is a collective, and the processes of
        # a sharded evaluation run different numbers of passes
        model = self.model if split == "train" else self.accelerator.unwrap_model(self.model)
        if self.cache is None:
            # In training the task says what its loss reads of the output (the logits; embeddings for a pair loss).
            read = self.inputs.task.loss_inputs if split == "train" else (lambda output: output.logits)
            return lambda batch, idx: read(model(**batch))
        return lambda batch, idx: self.cache.forward(model, self.features[split], idx, batch)


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
    """Fine-tune a model. The Python twin of ``thrifty train``; returns the run folder and metrics.
    `clock_start` (a `time.perf_counter()` value) starts the budget's clock earlier, e.g. when the command began.
    `on_evaluation(n, metrics)` is called after the n-th validation (n from 1); returning True stops the run there
    (`thrifty tune` prunes poor trials this way), keeping the best model so far like any other stop.
    `mlflow_parent_run_id` nests this run's MLflow run under another (the trials of a search).
    `evaluate_test=False` reads the test set (so that its texts are kept out of training, as always) but does
    not evaluate it: a search must not look at it."""
    return train_sharing(FeatureMemo(), config, output=output, overrides=overrides, resume=resume, overwrite=overwrite,
                         progress=progress, clock_start=clock_start, on_evaluation=on_evaluation,
                         mlflow_parent_run_id=mlflow_parent_run_id, evaluate_test=evaluate_test)


def train_sharing(features: FeatureMemo, config: Config | str | Path | dict | None = None, *,
                  output: Optional[str | Path] = None, overrides: Optional[list[str]] = None,
                  resume: Optional[str | Path] = None, overwrite: bool = False, progress: bool = True,
                  clock_start: Optional[float] = None,
                  on_evaluation: Optional[Callable[[int, dict[str, Any]], bool]] = None,
                  mlflow_parent_run_id: Optional[str] = None, evaluate_test: bool = True) -> RunResult:
    """`train`, reusing the frozen-layer features that `features` keeps from an earlier run of this process on the
    same model and texts, and keeping this run's there for the next (the trials of a search: tuning/search.py)."""
    wall_start = clock_start if clock_start is not None else time.perf_counter()
    processes = Processes(*launched())  # one process unless a launcher started several (training/distributed.py)
    config, run_dir, checkpoint_path = _config_and_run_dir(config, output, overrides, resume, overwrite, processes)
    if processes.world > 1 and strategy_traits(config.strategy.name).trains_pairs:
        raise ConfigError(f"strategy {config.strategy.name} learns from pairs drawn within one batch; run it in one "
                          "process (drop --processes): its data is a few examples per class anyway")
    if config.audit.enabled:  # its files are read now: a typo must not wait for the end of training
        from thrifty.audit.run import check_inputs

        check_inputs(config.audit)
    # Several machines are each paid for: the cost and a max_cost budget count all of them
    tracker = BudgetTracker(limits_for(config, get_hardware("auto", config.cost.price_per_hour), processes.machines),
                            started=wall_start)
    run, state, best_weights = _setup(config, run_dir, checkpoint_path, tracker, overwrite, processes, features)
    mlf = _mlflow(run, mlflow_parent_run_id) if processes.main else None
    log = RunLogger(run_dir, run.config, total_steps=run.total_steps, state=state, resumed=checkpoint_path is not None,
                    progress=progress, sync_every=run.tc.sync_every_steps or (1 if run.device.type == "cpu" else 50),
                    metric_keys=run.inputs.task.history_keys(), mlflow=mlf, writes=processes.main)
    energy = EnergyMeter(run.config.cost.country).start() if run.config.tracking.energy and processes.main else None
    setup_seconds = time.perf_counter() - wall_start  # reading, loading, tokenising, planning: before the first step
    try:
        best_weights = _loop(run, state, best_weights, log, tracker, on_evaluation)
        log.close()
        return _finish(run, state, best_weights, tracker, energy, log, mlf, wall_start, setup_seconds, evaluate_test)
    except BaseException as exc:
        log.close(failed=True)  # no progress line that reads like a finish
        if energy:
            energy.stop()  # the meter ends on every exit path
        _record_failure(exc, run_dir, state, processes, mlf)
        raise


def _record_failure(exc: BaseException, run_dir: Path, state: LoopState, processes: Processes, mlf) -> None:
    """The run folder's status and the MLflow run's end after `exc`; Ctrl-C becomes a one-line Interrupted."""
    if isinstance(exc, KeyboardInterrupt):
        if processes.main:
            set_status(run_dir, "interrupted", step=state.global_step)
        if mlf:
            mlf.end("KILLED")
        raise Interrupted(f"aborted at step {state.global_step}; continue from the last checkpoint with: "
                          f"thrifty train --resume {run_dir}") from None
    if isinstance(exc, Interrupted):
        if mlf:
            mlf.end("KILLED")
        return
    if processes.main:
        set_status(run_dir, "failed", step=state.global_step)
    if mlf:
        mlf.end("FAILED")


# --------------------------------------------------------------------------------------------------
# setup


def _config_and_run_dir(config, output, overrides, resume, overwrite,
                        processes: Processes) -> tuple[Config, Path, Optional[Path]]:
    """The config (saved, when resuming) and the run folder, checked before any expensive work (by the main process:
    the others may find the folder it has just made)."""
    if resume is None:
        config = as_config(config, overrides)
        if output is not None:
            config.output.dir = str(output)
        if not processes.main:
            return config, Path(config.output.dir).expanduser(), None
        return config, check_new_run_dir(config.output.dir, overwrite), None
    run_dir = Path(resume).expanduser()
    if not (run_dir / CONFIG_FILE).exists():
        raise RunDirError(f"cannot resume {run_dir}: it has no {CONFIG_FILE}; give the folder of an earlier `thrifty train`")
    if read_status(run_dir).get("status") == "complete":
        raise RunDirError(f"{run_dir} is already complete; nothing to resume (start a new run with another --output)")
    checkpoint_path = ckpt.find_checkpoint(run_dir)
    if checkpoint_path is None:
        raise RunDirError(f"{run_dir} has no checkpoint to resume from (it stopped before the first one); start it again with --overwrite")
    if overrides:
        raise ConfigError("a resumed run keeps its saved config; drop the --section.key overrides (or start a new run)")
    saved_by = int(read_status(run_dir).get("processes", 1))
    if saved_by != processes.world:  # another split of the batches and of the random draws: not the same run
        raise ConfigError(f"{run_dir} was trained by {saved_by} process(es); resume it with the same number: "
                          f"thrifty train --resume {run_dir}" + (f" --processes {saved_by}" if saved_by > 1 else ""))
    return config_from_dict(load_yaml(run_dir / CONFIG_FILE)).validate(), run_dir, checkpoint_path


def _forget_other_precision(mixed_precision: str) -> None:
    """Accelerate keeps one mixed-precision setting per process and refuses another: a process that trains in fp32 and
    then in bf16 (tune's trials, a notebook, the tests) starts the second from a clean state. Only the precision part
    is dropped; the processes' own state (ranks, the process group) is kept."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _run_precision(config: Config, device: torch.device, resumed_dir: Optional[Path]) -> Precision:
    """The precision of this run; a resumed run goes on in the one it started with (on another machine `auto` could
    resolve otherwise), refused in one line where this machine cannot run it."""
    saved = read_status(resumed_dir).get("precision") if resumed_dir is not None else None
    if saved is None:
        return training_precision(config.train.precision, device, config.task)
    kept = training_precision(saved, device, config.task)
    return Precision(kept.name, f"resumed in the precision the run started with ({saved})")


def _setup(config: Config, run_dir: Path, checkpoint_path: Optional[Path], tracker: BudgetTracker, overwrite: bool,
           processes: Processes, memo: FeatureMemo) -> tuple[Run, LoopState, Optional[dict]]:
    tc = config.train
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = _run_precision(config, torch.device(device_type), run_dir if checkpoint_path is not None else None)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    allocator.keep_freed_memory()  # a step reallocates the same large tensors: reuse their pages (models/allocator.py)
    model_path = resolve_model(config.model.name)  # a missing model (or an unfinished warm-start run) fails here
    from accelerate import Accelerator
    from transformers import set_seed

    # Accelerate places the model, handles mixed precision and, under a launcher, joins the processes (gloo on CPUs).
    _forget_other_precision(precision.accelerate)
    accelerator = Accelerator(mixed_precision=precision.accelerate, cpu=device_type == "cpu")
    set_seed(tc.seed)
    inputs = _read_inputs(config, model_path, processes)
    # The budget: time and FLOPs are counted from the start of this command (and of earlier sessions of a resumed
    # run). A run that would not fit is re-planned before it starts (planning/budget_plan.py).
    planned: Optional[dict[str, Any]] = None
    if config.budget.active and checkpoint_path is None:
        config, inputs, planned = _plan(config, inputs, model_path, tracker, processes)
    _open_run_dir(config, inputs, run_dir, checkpoint_path, overwrite, processes, precision)

    # Optimisation: Accelerate wraps the model (DDP under several processes) and the optimizer; or, with train.fsdp,
    # PyTorch's fully_shard splits the model between the processes and the optimizer is made on the shards.
    tc = config.train
    if tc.fast_dropout:
        fast_dropout.enable(inputs.model, accelerator.device)  # undone before the model is saved (_save_model)
    parallel = parallelism(processes, tc.fsdp, accelerator)
    if tc.fsdp and not parallel.shards:
        processes.say("train.fsdp: one process, nothing to shard")
    model, optimizer = parallel.prepare(
        inputs.model, lambda m: make_optimizer(m, config.learning_rate, tc.weight_decay, accelerator.device),
        processes.say)
    unwrapped = accelerator.unwrap_model(model)
    cache, features, cache_seconds, cache_bytes = _frozen_cache(config, inputs, unwrapped, model_path,
                                                                accelerator.device, memo, processes.say, precision)
    # After the cache (which stores every position): a head that reads the first token only needs no other position
    # of the last layer.
    if tc.prune_last_layer and not parallel.shards and inputs.task.prunes_last_layer and first_token.enable(unwrapped):
        processes.say("last layer computed for the first token only (the only position the classifier reads)")
    steps_per_epoch, total_steps, eval_at, scheduler = _schedule(config, inputs, optimizer, accelerator, processes,
                                                                 precision)
    inputs.task.fit_loss(inputs.train, tc.batch_size)  # e.g. the scored tokens per batch of a token-level loss

    run = Run(config=config, run_dir=run_dir, model_path=model_path, inputs=inputs, accelerator=accelerator, model=model,
              optimizer=optimizer, scheduler=scheduler, trainable=[p for p in model.parameters() if p.requires_grad],
              steps_per_epoch=steps_per_epoch, total_steps=total_steps, eval_at=eval_at, cache=cache, features=features,
              cache_seconds=cache_seconds, cache_bytes=cache_bytes, resumed_from=checkpoint_path,
              precision=precision,
              parallel=parallel)
    if checkpoint_path is None:
        return run, LoopState(plan=planned), None
    state, best_weights = _restore(run, checkpoint_path, tracker)
    return run, state, best_weights


def _read_inputs(config: Config, model_path: str, processes: Processes) -> Inputs:
    """Data (read, clean, split, report), model, tokenizer, tokens, strategy, and what they came to, said."""
    # The main process goes first, so that the others read its token cache instead of writing the same files at the
    # same time.
    if not processes.main:
        processes.barrier()
    inputs = prepare_inputs(config, model_path)
    if processes.main:
        processes.barrier()
    say = processes.say
    say(format_report(inputs.data.report))
    tok = inputs.data.report["tokens"]["train"]
    say(f"tokens: max_length {inputs.max_length} ({inputs.max_length_how}); train mean {tok['mean']}, p99 {tok['p99']}, "
        f"max {tok['max']}; {tok['truncated']} of {tok['count']} texts truncated"
        + (f"; token cache {inputs.tokens.hits} hits, {inputs.tokens.misses} misses" if inputs.tokens.folder else ""))
    if inputs.warm_start:
        w = inputs.warm_start
        say(f"warm start from {w['from']}: {len(w['kept'])} labels kept" + (f", added {w['added']}" if w["added"] else "")
            + (f", dropped {w['dropped']}" if w["dropped"] else ""))
    return inputs


def _plan(config: Config, inputs: Inputs, model_path: str, tracker: BudgetTracker,
          processes: Processes) -> tuple[Config, Inputs, Optional[dict[str, Any]]]:
    """The run fitted into its budget: one decision for every process (the main one plans, the others take its
    config)."""
    planned = None
    if processes.main:
        config, inputs, planned = plan(config, inputs, model_path, tracker, processes.say)
    planned_config, planned = processes.broadcast((config.to_dict(), planned) if processes.main else None)
    if not processes.main and planned_config != config.to_dict():
        config = config_from_dict(planned_config).validate()
        inputs = prepare_inputs(config, model_path)
    return config, inputs, planned


def _open_run_dir(config: Config, inputs: Inputs, run_dir: Path, checkpoint_path: Optional[Path], overwrite: bool,
                  processes: Processes, precision: Precision) -> None:
    """The run folder exists only from here on: bad data, a bad model or a hopeless budget leave nothing behind."""
    if processes.main:
        if checkpoint_path is None:
            create_run_dir(run_dir, overwrite)
            with writing(run_dir, CONFIG_FILE):
                dump_config(resolved_for_saving(config, run_dir), run_dir / CONFIG_FILE)  # as planned
        set_status(run_dir, "running", command="train", resumed=checkpoint_path is not None, processes=processes.world,
                   precision=precision.name)
        write_json(run_dir / "data_report.json", inputs.data.report)
    processes.say(inputs.strategy.describe())
    if task_traits(config.task).learns_unlabelled_text and inputs.strategy.details.get("new"):
        tied = "its output layer is tied to the word embeddings, and " if inputs.strategy.details.get("tied") else ""
        processes.say(f"{config.model.name} ships no trained {config.task} head: {tied}{inputs.strategy.details['new']} "
                      "start from fresh weights, trained from step 1")


def _schedule(config: Config, inputs: Inputs, optimizer, accelerator, processes: Processes,
              precision: Precision) -> tuple[int, int, set, Any]:
    """Steps per epoch, steps in all, the steps that evaluate, and the learning-rate schedule; said in one line."""
    tc = config.train
    # train.batch_size is the batch of one step over all processes: the same run on 1 or N processes (each takes
    # batch_size / N of it, training/distributed.py)
    if processes.world > 1 and tc.batch_size < processes.world:
        raise ConfigError(f"train.batch_size={tc.batch_size} is the batch over all {processes.world} processes: give at "
                          f"least {processes.world}, one example each")
    batches_per_epoch = _batches_per_epoch(inputs, tc, processes)
    steps_per_epoch = math.ceil(batches_per_epoch / tc.gradient_accumulation_steps)
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total_steps = min(total_steps, tc.max_steps)
    warmup = warmup_steps_for(total_steps, tc.warmup_ratio)
    eval_at = set(evaluation_steps(total_steps, steps_per_epoch, tc.eval_every_steps, tc.evaluations_per_epoch))
    scheduler = linear_warmup_decay(optimizer, warmup, total_steps)
    effective_batch = tc.batch_size * tc.gradient_accumulation_steps
    tok = inputs.data.report["tokens"]["train"]
    processes.say(
        f"training: {len(inputs.train)} examples x {tc.epochs} epochs = {total_steps} steps of {effective_batch} examples "
        f"(~{effective_batch * tok['mean']:.0f} real tokens/step), warmup {warmup}, lr {config.learning_rate:g}, "
        f"device {accelerator.device.type}, precision {precision.name} ({precision.reason}), threads {torch.get_num_threads()}"
        + (f" x {processes.world} processes ({accelerator.distributed_type.value.lower()}, "
           f"{math.ceil(tc.batch_size / processes.world)} examples each per batch)" if processes.world > 1 else ""))
    return steps_per_epoch, total_steps, eval_at, scheduler


def _restore(run: Run, checkpoint_path: Path, tracker: BudgetTracker) -> tuple[LoopState, Optional[dict]]:
    """The loop state, the best weights so far and everything that moves in training, back from the checkpoint."""
    best_weights, saved = run.parallel.load(checkpoint_path, run.unwrapped, run.optimizer)
    run.scheduler.load_state_dict(saved["scheduler"])
    state = LoopState.from_dict(saved["loop"])
    tracker.seconds_before, tracker.flops = state.budget_spent_seconds, state.budget_flops
    if run.processes.main:
        _truncate_log(run.run_dir / "train_log.jsonl", state.global_step)
    run.say(f"resumed from step {state.global_step} (epoch {state.epoch + 1})")
    return state, best_weights


def _batches_per_epoch(inputs: Inputs, tc, processes: Processes) -> int:
    if processes.world == 1:
        return math.ceil(len(inputs.train) / tc.batch_size)
    # Counted, not computed: a global batch smaller than the processes is left out (Processes.usable)
    return len(processes.usable(inputs.task.training_batches(inputs.train, tc.batch_size, tc.seed, 0, tc.group_by_length)))


def _frozen_cache(config: Config, inputs: Inputs, model, model_path: str, device, memo: FeatureMemo,
                  say: Callable[[str], None], precision: Precision):
    """Frozen layers are a fixed function of the text: compute them once, not once per epoch. They are pretrained
    weights run without dropout, so the same texts give the same features in every run of this process
    (hyperparameter trials): `memo` keeps the last ones for the next run. They are computed in the run's precision
    (bf16 autocast: what the frozen layers would give in every epoch) and kept as the fp32 hidden states they are."""
    tc = config.train
    layers = FrozenFeatureCache.layers_to_cache(config.strategy.name, tc.cache_frozen_layers and inputs.task.caches_frozen_layers,
                                                inputs.strategy.details, model)
    if not layers:
        return None, {}, 0.0, 0
    t0 = time.perf_counter()
    cache = FrozenFeatureCache(model, layers)
    pad_id = inputs.tokenizer.pad_token_id
    key = (model_path, layers, precision.name,
           hash((tuple(map(tuple, inputs.train_ids)), tuple(map(tuple, inputs.val_ids)))))
    dtype = precision.autocast_dtype
    features, cache.reused = memo.get(key, lambda: {
        "train": cache.compute(inputs.train_ids, pad_id, tc.eval_batch_size, device, dtype),
        "validation": cache.compute(inputs.val_ids, pad_id, tc.eval_batch_size, device, dtype)})
    seconds = time.perf_counter() - t0
    size = sum(f.nbytes for f in features.values())
    say(f"frozen-layer cache: {cache.frozen_layers} layers, {size / 2**20:.1f} MiB, built in {seconds:.1f}s; "
        "later epochs skip those layers")
    return cache, features, seconds, size


def _mlflow(run: Run, parent_run_id: Optional[str]):
    """An MLflow run with the config and the data as params, or None (off, not installed, or unreachable)."""
    config, run_dir, inputs = run.config, run.run_dir, run.inputs
    if not config.tracking.mlflow.enabled:
        return None
    from thrifty.tracking.mlflow_logger import MlflowLogger, flatten

    mlf = MlflowLogger.start(config.tracking.mlflow, run_dir, run_dir.name, parent_run_id)
    if mlf is None:
        return None
    params = {k: v for k, v in flatten("", config.to_dict()).items() if not k.startswith("tracking.mlflow")}
    params.update({"model.total_parameters": inputs.strategy.total_parameters,
                   "model.trainable_parameters": inputs.strategy.trainable_parameters,
                   "data.train_examples": len(inputs.train), "data.validation_examples": len(inputs.validation),
                   "data.labels": len(inputs.data.label_names)})
    mlf.log_params(params)
    mlf.log_artifact(run_dir / "data_report.json")
    mlf.log_artifact(run_dir / CONFIG_FILE)
    return mlf


# --------------------------------------------------------------------------------------------------
# the loop


@dataclass
class _Loop:
    """What the loop works with besides the Run: the loop state, the best weights so far, who decides stops and who
    reports. The loop's wall clock counts everything between steps too (checkpoints, logs): what a stopwatch started
    at the first step reads, the clock a fair comparison with another trainer uses (benchmarks/)."""

    run: Run
    state: LoopState
    best_weights: Optional[dict]
    stops: StopController
    log: RunLogger
    tracker: BudgetTracker
    wall_before: float = 0.0  # the loop's wall time in earlier sessions (a resumed run)
    started: float = field(default_factory=time.perf_counter)

    def tick_wall_clock(self) -> None:
        self.state.loop_wall_seconds = self.wall_before + time.perf_counter() - self.started

    def flush(self) -> None:
        self.log.flush_steps(self.state, self.tracker, self.stops)


def _loop(run: Run, state: LoopState, best_weights: Optional[dict], log: RunLogger, tracker: BudgetTracker,
          on_evaluation: Optional[Callable[[int, dict[str, Any]], bool]]) -> Optional[dict]:
    """Train until the StopController says stop; returns the best weights seen. Ctrl-C leaves a checkpoint and
    raises Interrupted; the finished loop leaves one too, should saving the model fail afterwards."""
    tc = run.tc
    costs = _work_costs(run, tracker, run.unwrapped, run.inputs.train.lengths)
    stops = StopController(tc, run.config.metric, tracker, run.config.budget.active, on_evaluation, costs=costs,
                           agree=run.parallel.agree)
    loop = _Loop(run, state, best_weights, stops, log, tracker, wall_before=state.loop_wall_seconds)
    run.model.train()
    with stops:
        done = state.global_step >= run.total_steps or state.stop_reason is not None
        while not done and state.epoch < tc.epochs:
            _epoch(loop)
            if state.stop_reason is not None:
                break
            state.epoch += 1
            state.batch_in_epoch = 0
    stops.end_of_epochs(state)
    loop.flush()
    evaluated = [h["step"] for h in state.history]
    if state.stop_reason == "budget" and (not evaluated or evaluated[-1] != state.global_step):
        # The weights trained since the last evaluation may be the best ones: look before keeping the best.
        log.say(f"budget reached ({tracker.stopped_by}) after {tracker.spent_seconds:.0f} s, at step {state.global_step}: "
                "evaluating the current weights, then keeping the best")
        batches_per_epoch = math.ceil(len(run.inputs.train) / tc.batch_size / run.accelerator.num_processes)
        _evaluate(loop, state.global_step, round(state.epoch + state.batch_in_epoch / max(1, batches_per_epoch), 3))
    _save_checkpoint(loop)
    return loop.best_weights


def _epoch(loop: _Loop) -> None:
    """The steps of the epoch in progress, from where it stands, until it ends or a stop is decided."""
    run, state, stops, log, tc = loop.run, loop.state, loop.stops, loop.log, loop.run.tc
    task, inputs, epoch, accum = run.inputs.task, run.inputs, state.epoch, tc.gradient_accumulation_steps
    task.start_epoch(run.unwrapped, epoch, tc.epochs, state.batch_in_epoch > 0, inputs.train,
                     inputs.tokenizer.pad_token_id, tc.eval_batch_size, run.device)  # e.g. fewshot: pairs, then labels
    # The same (seed, epoch) always gives the same batches, in every process; each takes its share of each.
    batches = run.processes.usable(task.training_batches(inputs.train, tc.batch_size, tc.seed, epoch, tc.group_by_length))
    groups = [batches[i : i + accum] for i in range(0, len(batches), accum)]
    for g in range(state.batch_in_epoch // accum, len(groups)):
        if stops.before_step(state, groups[g]):
            break
        log.start_window()
        _count_tokens(run, state, groups[g])
        step_loss, grad_norm = train_step(run, groups[g])
        state.global_step += 1
        state.batch_in_epoch = min(len(batches), (g + 1) * accum)
        loop.tracker.flops += sum(stops.step_flops([idx]) for idx in groups[g])
        step = state.global_step
        log.step({"step": step, "epoch": epoch + 1, "loss": None, "lr": run.scheduler.get_last_lr()[0]},
                 step_loss, grad_norm)
        last_step = step >= run.total_steps
        evaluate_due = step in run.eval_at
        checkpoint_due = (tc.checkpoint_every_steps and step % tc.checkpoint_every_steps == 0) or (
            not tc.checkpoint_every_steps and (evaluate_due or last_step))
        if log.due() or evaluate_due or last_step or checkpoint_due or stops.user_requested:
            loop.flush()
        _inject_fault(step)
        if evaluate_due or last_step:
            _evaluate(loop, step, round(epoch + (g + 1) / len(groups), 3))
        if stops.after_step(state, last_step, cut_short=run.total_steps < run.steps_per_epoch * tc.epochs):
            break
        if checkpoint_due:
            _save_checkpoint(loop)
    if stops.user_requested_anywhere() and state.stop_reason is None:
        loop.flush()
        _save_checkpoint(loop)
        if run.processes.main:
            set_status(run.run_dir, "interrupted", step=state.global_step)
        raise Interrupted(f"stopped by the user at step {state.global_step}; continue with: "
                          f"thrifty train --resume {run.run_dir}")


def _count_tokens(run: Run, state: LoopState, group: list[list[int]]) -> None:
    """What a step trains on, counted from the lengths (no wait for the device): every process's share, in each. The
    run's throughput, and the padding each pass carried."""
    lengths = run.inputs.train.lengths
    for whole in group:
        shares = run.parallel.all_shares(whole)
        state.tokens_seen += sum(lengths[i] for i in whole)
        state.padded_tokens_seen += sum(len(sh) * max(lengths[i] for i in sh) for sh in shares if sh)
        state.examples_seen += len(whole)


def train_step(run: Run, group: list[list[int]]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One optimizer step on one global batch of training examples, given as its accumulation micro-batches (indices
    into the training set): each micro-batch forward (the task's loss) and backward, then clip, step and schedule.
    Returns the loss of the whole batch and the gradient norm (None without train.max_grad_norm), both still on the
    device: reading them would wait for it. How many processes share the batch is the run's parallelism's business:
    it hands this process its share, weights its loss and synchronises gradients once per step."""
    task, inputs, parallel, device, tc = run.inputs.task, run.inputs, run.parallel, run.device, run.tc
    forward, pad_id, pin = run.forward("train"), inputs.tokenizer.pad_token_id, device.type == "cuda"
    step_loss = torch.zeros((), device=device)
    for micro, whole in enumerate(group):
        idx = parallel.share(whole)
        cpu_batch = task.collate(inputs.train, idx, pad_id)
        batch = {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) for k, v in cpu_batch.items()}
        labels = batch.pop("labels")
        with parallel.gradient_sync(run.model, last=micro == len(group) - 1):
            with run.accelerator.autocast():
                logits = forward(batch, idx)
            loss = parallel.batch_loss(task.loss(logits, labels) / len(group), task, len(idx), len(whole))
            run.accelerator.backward(loss)
        step_loss += loss.detach()
    step_loss = parallel.mean(step_loss)  # the loss of the whole batch (every process logs the same)
    grad_norm = None
    if tc.max_grad_norm > 0:
        grad_norm = parallel.whole(run.accelerator.clip_grad_norm_(run.trainable, tc.max_grad_norm).detach())
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm


def _evaluate(loop: _Loop, step: int, epoch_done: float) -> None:
    """Evaluate on validation, keep the best weights and metrics, log, and let the StopController decide."""
    run, state, tracker = loop.run, loop.state, loop.tracker
    task, inputs, tc, unwrapped = run.inputs.task, run.inputs, run.tc, run.unwrapped
    pad_id = inputs.tokenizer.pad_token_id
    task.before_evaluation(unwrapped, inputs.train, pad_id, tc.eval_batch_size, run.device)  # e.g. fit a closed-form head
    task.plan_answers(planned_training_seconds(run, state), evaluations(run), state.answers_per_evaluation)
    t_eval = time.perf_counter()  # the fit above is training; from here on, evaluation
    with run.parallel.evaluating():  # each process its share of the passes (DDP), or every pass (FSDP)
        metrics = task.evaluate(unwrapped, inputs.validation, inputs.data.validation, inputs.data.label_names,
                                pad_id, tc.eval_batch_size, run.device, run.autocast_dtype, run.forward("validation"))
    state.last_eval_seconds = time.perf_counter() - t_eval
    state.eval_seconds += state.last_eval_seconds
    tracker.flops += loop.stops.eval_flops
    value = metrics[run.config.metric]
    state.answers_per_evaluation = metrics.get("generated", state.answers_per_evaluation)  # the first fixes it
    improved = improves(run.config.metric, metrics, state.best_metrics)
    if improved:
        state.best_metric, state.best_step, state.evals_without_improvement = value, step, 0
        state.best_metrics = metrics
        loop.best_weights = ckpt.trainable_state(unwrapped)  # a sharded model: each process keeps its own shards
    else:
        state.evals_without_improvement += 1
    spent = state.step_seconds + state.eval_seconds + run.cache_seconds
    loop.tick_wall_clock()
    state.history.append({"step": step, "epoch": epoch_done, **{k: metrics[k] for k in task.history_keys()},
                          "seconds": round(spent, 2),  # training + evaluation (+ frozen cache) so far
                          "wall_seconds": round(state.loop_wall_seconds + run.cache_seconds, 2)})
    loop.log.evaluation(step, epoch_done, metrics, task.summary(metrics), improved)
    loop.stops.after_evaluation(state, metrics)


def _save_checkpoint(loop: _Loop) -> None:
    run, state = loop.run, loop.state
    loop.log.flush_file()
    state.budget_spent_seconds = loop.tracker.spent_seconds  # what this and earlier sessions have spent
    loop.tick_wall_clock()
    state.budget_flops = loop.tracker.flops
    run.parallel.save(run.run_dir, run.unwrapped, loop.best_weights, run.optimizer, run.scheduler, state.to_dict())
    loop.tick_wall_clock()  # the checkpoint's own time counts from here on (the saved state holds the time before it)


def planned_training_seconds(run: Run, state: LoopState) -> float:
    """The whole run's training time as its steps so far predict it (what a share of the run is taken of)."""
    return state.step_seconds / max(1, state.global_step) * run.total_steps


def evaluations(run: Run) -> int:
    """The run's planned evaluations: the validations, and the test at the end."""
    return len(run.eval_at) + (run.inputs.test is not None)


def _work_costs(run: Run, tracker: BudgetTracker, model, train_lengths: list[int]) -> WorkCosts:
    """What the StopController needs to check the budget: the reserve for saving and, under a FLOP limit, the FLOPs
    of a step and of an evaluation (counted per real batch only then: counting costs a second)."""
    tc, inputs = run.tc, run.inputs
    save_reserve = save_seconds(sum(p.numel() * p.element_size() for p in model.parameters()))
    if run.config.budget.max_flops is None:
        return WorkCosts(save_reserve)
    from thrifty.cost.flops import flop_model

    layers = run.cache.frozen_layers if run.cache is not None else 0
    flops = flop_model(model, frozen_layers=layers)

    def sorted_forward(lengths: list[int], frozen_only: bool) -> float:
        rate = flops.frozen_forward_flops if frozen_only else flops.forward_flops
        return sum(len(b) * rate([max(lengths[i] for i in b)]) for b in sorted_batches(lengths, tc.eval_batch_size))

    def step_flops(group: list) -> float:
        return sum(len(idx) * (flops.train_flops([w]) - flops.frozen_forward_flops([w]))
                   for idx in group for w in [max(train_lengths[i] for i in idx)])

    if run.cache is not None and not run.cache.reused:  # building the cache was work too (again after a resume)
        tracker.flops += sorted_forward(train_lengths, True) + sorted_forward(inputs.validation.lengths, True)
    eval_flops = sorted_forward(inputs.validation.lengths, False) - sorted_forward(inputs.validation.lengths, True)
    return WorkCosts(save_reserve, eval_flops, step_flops)


# --------------------------------------------------------------------------------------------------
# finish


def _finish(run: Run, state: LoopState, best_weights: Optional[dict], tracker: BudgetTracker, energy,
            log: RunLogger, mlf, wall_start: float, setup_seconds: float, evaluate_test: bool) -> RunResult:
    """The best model: restored, evaluated on test (once), saved with its manifest; metrics.json written last."""
    config, run_dir, inputs, task = run.config, run.run_dir, run.inputs, run.inputs.task
    tc, data = run.tc, inputs.data
    unwrapped = run.accelerator.unwrap_model(run.model)
    if best_weights is not None:
        ckpt.load_trainable_state(unwrapped, best_weights)  # a sharded model: each process its own shards
    pad_id = inputs.tokenizer.pad_token_id
    # The best weights were evaluated when they were found; evaluation is deterministic, so no second pass.
    if not state.best_metrics:  # nothing evaluated (a budget stop before the first evaluation): fit what is fitted
        task.before_evaluation(unwrapped, inputs.train, pad_id, tc.eval_batch_size, run.device)
    with run.parallel.evaluating():  # each process its share (DDP), or all (FSDP)
        results: dict[str, Any] = {"validation": state.best_metrics or task.evaluate(
            unwrapped, inputs.validation, data.validation, data.label_names, pad_id, tc.eval_batch_size, run.device,
            run.autocast_dtype, run.forward("validation"))}
        if inputs.test is not None and evaluate_test:
            task.plan_answers(planned_training_seconds(run, state), evaluations(run), None)  # the test: its own share
            results["test"] = task.evaluate(unwrapped, inputs.test, data.test, data.label_names, pad_id,
                                            tc.eval_batch_size, run.device, run.autocast_dtype)
    whole = run.parallel.whole_weights(unwrapped)  # sharded weights, whole: a collective, every process takes part
    if not run.processes.main:  # the main process saves, writes and reports; the others are done
        return RunResult(run_dir, results)
    if whole is not None:  # the sharded model, whole again: a fresh copy of the model with the trained weights
        unwrapped = _unsharded(run, whole)
    wall = time.perf_counter() - wall_start
    # The cache is part of the cost of training: it counts in the throughput, not beside it.
    step_seconds = max(state.step_seconds + run.cache_seconds, 1e-9)
    results["train"] = {
        "seconds": round(wall, 2),
        "step_seconds": round(state.step_seconds, 2),
        # a stopwatch from the first step to the end of the loop (evaluations, checkpoints, logging and the
        # frozen-layer cache included): the clock benchmarks/ compares with other trainers
        "loop_wall_seconds": round(state.loop_wall_seconds + run.cache_seconds, 2),
        "setup_seconds": round(setup_seconds - run.cache_seconds, 2),  # the cache counts in the loop, not here
        "eval_seconds": round(state.eval_seconds, 2),  # validation passes inside the loop (part of loop_wall_seconds)
        "cache_seconds": round(run.cache_seconds, 3),
        "frozen_cache": {"layers": run.cache.frozen_layers, "bytes": run.cache_bytes} if run.cache else None,
        "examples": state.examples_seen,
        "tokens": state.tokens_seen,
        "tokens_per_second": round(state.tokens_seen / step_seconds, 1),
        "examples_per_second": round(state.examples_seen / step_seconds, 2),
        "padding_fraction": round(1 - state.tokens_seen / max(1, state.padded_tokens_seen), 4),
        "steps": state.global_step,
        "epochs": tc.epochs,
        "stop_reason": state.stop_reason,
        "resumed": run.resumed_from is not None,
        "processes": run.processes.world,
    }
    results["best"] = {"metric": config.metric, "value": state.best_metric, "step": state.best_step,
                       "seconds": next((h["seconds"] for h in state.history if h["step"] == state.best_step), None)}
    results["history"] = state.history
    results["model"] = {"name": config.model.name, "task": config.task, "strategy": inputs.strategy.name,
                        "total_parameters": inputs.strategy.total_parameters,
                        "trainable_parameters": inputs.strategy.trainable_parameters, "max_length": inputs.max_length,
                        "learning_rate": config.learning_rate, "labels": data.label_names, "device": run.device.type,
                        "precision": run.precision.name, "precision_reason": run.precision.reason}
    log.final(results, state.global_step)

    primary = task_traits(config.task).primary_metric
    _save_model(run, unwrapped, results)
    results["model"]["bf16_agreement"] = _bf16_agreement(run, state, tracker)
    if config.audit.enabled:
        results["audit"] = _audit(run)
    with writing(run_dir, "plots"):
        for split in ("validation", "test"):
            if split in results:
                task.plots(results[split], data.label_names, run_dir / f"{task.plot_name}_{split}.png",
                           f"{split} ({config.model.name})")
    baseline = task.baseline(data.validation, data.label_names)  # None where no trivial predictor exists (LM)
    results["budget"] = tracker.report(primary, results["validation"][primary],
                                       None if baseline is None else round(baseline, 4), state.plan)
    results["budget"]["energy"] = energy.stop() if energy else None
    write_json(run_dir / "metrics.json", results)  # written last: its presence means the run is complete
    if not config.output.keep_checkpoints:
        shutil.rmtree(run_dir / ckpt.CHECKPOINT_DIR, ignore_errors=True)
    set_status(run_dir, "complete", step=state.global_step)
    if mlf:
        _mlflow_finish(mlf, run_dir, results, state.global_step, task.history_keys(), task.plot_name)
    run.say(f"validation: {task.summary(results['validation'])}")
    if "test" in results:
        run.say(f"test: {task.summary(results['test'])}")
    tr = results["train"]
    run.say(f"trained {tr['steps']} steps in {tr['seconds']:.1f}s ({tr['tokens_per_second']:,.0f} real tokens/s, "
         f"padding {100 * tr['padding_fraction']:.1f}%); run folder: {run_dir}")
    run.say(format_spent(results["budget"]))
    return RunResult(run_dir, results)


def _bf16_agreement(run: Run, state: LoopState, tracker: BudgetTracker) -> Optional[dict[str, Any]]:
    """Where the hardware has bf16: how many validation labels the saved model's bf16 weights give as its fp32 weights
    do, recorded in the model folder (predict/evaluate/serve choose bf16 by it: models/precision.py). It costs about
    two validation passes: skipped where a time budget has no room left for them; and the model is saved already, so
    a check that fails is reported, not fatal (the folder then records nothing and serves in fp32)."""
    from thrifty.inference.agreement import MAX_EXAMPLES, record_bf16_agreement

    share = min(1.0, MAX_EXAMPLES / max(1, len(run.inputs.data.validation)))
    needed = 2 * share * state.last_eval_seconds + 5.0  # two passes and two loads of the folder
    left = tracker.remaining_seconds()
    if left is not None and needed > left:
        run.say("bf16 agreement check: skipped (no room left in the time budget); predict/serve use fp32 by default")
        return None
    try:
        with writing(run.run_dir, "the bf16 agreement check"):
            record = record_bf16_agreement(run.run_dir / "model", run.inputs.data.validation)
    except Exception as exc:  # noqa: BLE001 - the model is saved; the check is an extra
        run.say(f"bf16 agreement check: not done ({type(exc).__name__}: {exc}); predict/serve use fp32 by default")
        return {"error": f"{type(exc).__name__}: {exc}"}
    if record is not None:
        run.say(f"bf16 weights give {100 * record['label_agreement']:.2f}% of {record['labels']} validation labels as "
                f"fp32 ({record['hardware']}): predict/serve use "
                f"{'bf16' if record['label_agreement'] >= record['floor'] else 'fp32'} by default")
    return record


def _unsharded(run: Run, whole: dict) -> Any:
    """A plain (unsharded) model holding `whole`, the gathered weights of a sharded one: what is saved and audited."""
    from thrifty.inputs import load_model

    inputs = run.inputs
    plain, _, _ = load_model(run.config, inputs.task, run.model_path, inputs.data.label_names,
                             inputs.tokenizer.pad_token_id)
    missing, unexpected = plain.load_state_dict(whole, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(f"the gathered weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return plain.eval()


def _save_model(run: Run, model, results: dict[str, Any]) -> None:
    """The final model in Hugging Face format (safetensors) with the manifest that makes the folder stand alone."""
    config, run_dir, inputs = run.config, run.run_dir, run.inputs
    final, tmp = run_dir / "model", run_dir / "model.tmp"
    fast_dropout.disable(model)  # the saved model is what it would be without the training-only dropout
    base = {"name": config.model.name, "path": run.model_path, "weights_sha256": weights_sha256(run.model_path)}
    parent = None
    if inputs.warm_start:  # the base of a warm start is its parent's base; the parent is recorded as the parent
        parent_manifest = read_manifest(run.model_path)
        base = parent_manifest.get("base_model", base)
        parent = {"model": run.model_path, "weights_sha256": weights_sha256(run.model_path),
                  "run": str(Path(run.model_path).parent) if Path(run.model_path).name == "model" else None,
                  "labels": inputs.warm_start}
    train_split = inputs.data.train
    manifest = {
        "task": config.task, "labels": inputs.data.label_names, "format": "full", "strategy": config.strategy.name,
        "preprocessing": preprocessing(config.data, inputs.max_length, inputs.eval_max_length, config.task),
        "base_model": base, "parent": parent,
        "data": {"train_file": inputs.data.report["files"].get("train"), "train_examples": len(train_split),
                 "fingerprint": data_fingerprint(train_split.texts, getattr(train_split, "labels", None)
                                                 or getattr(train_split, "tags", None) or [None] * len(train_split))},
        "metrics": {split: {k: results[split][k] for k in inputs.task.history_keys()}
                    for split in ("validation", "test") if split in results},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    # A LoRA adapter is saved alone (megabytes) unless it sits on a warm-started model, which has no hub name to
    # load as its base: then the merged model is saved.
    strategy = strategy_traits(config.strategy.name)
    if strategy.trains_pairs:  # an encoder folder, the head beside it: models/sentence.py
        manifest.update(format=SENTENCE_FORMAT, pooling="mean", normalize=True)
    if task_traits(config.task).writes_text:  # how `thrifty generate` and /v1/generate write with it, unless told otherwise
        manifest["generation"] = {"prompt_format": inputs.task.prompt_format, **config.generate.writing(),
                                  "data": {k: getattr(config.data, k) for k in FORMAT_KEYS}}
        model.config.use_cache = True  # off in training (inputs.load_model); generation wants it
    adapter = strategy.adapter
    merge = adapter and (config.strategy.merge_lora or parent is not None)
    with writing(run_dir, "the model"):
        shutil.rmtree(tmp, ignore_errors=True)
        if adapter:
            model.save_pretrained(tmp)  # the adapter and the trained head only
            if merge:
                shutil.rmtree(run_dir / "adapter", ignore_errors=True)
                tmp.rename(run_dir / "adapter")
                model.merge_and_unload().save_pretrained(tmp, safe_serialization=True)
            else:
                manifest["format"] = "lora_adapter"
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        inputs.tokenizer.save_pretrained(tmp)
        write_manifest(tmp, manifest)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)


def _audit(run: Run) -> dict[str, Any]:
    """The bias audit of the saved model (audit: section): its summary into the manifest and metrics.json. A failure
    of the audit itself is reported, and the run still completes: the model is good to use, the audit can be rerun
    with `thrifty audit RUN_DIR`."""
    from thrifty.audit.run import audit
    from thrifty.errors import ThriftyError

    a, final = run.config.audit, run.run_dir / "model"
    try:
        report = audit(str(final), corpus=a.corpus, templates=a.templates, terms=a.terms,
                       attributes=a.attributes or None, data=a.data, group_column=a.group_column,
                       positive_label=a.positive_label, output=run.run_dir / "audit", fail_on=a.fail_on,
                       association=a.association, log=run.say)
    except ThriftyError as exc:
        run.say(f"audit: not done ({exc}); rerun it with: thrifty audit {run.run_dir}")
        return {"error": str(exc)}
    summary = {k: v for k, v in report["summary"].items() if v is not None}
    manifest = read_manifest(final)
    manifest["audit"] = {"summary": summary, "failed": report["failed"], "fail_on": a.fail_on}
    write_manifest(final, manifest)
    run.say(f"audit: largest group gap {summary.get('max_gap')}, label changes up to "
         f"{summary.get('max_label_change_rate')}, {summary.get('significant_gaps')} significant gaps"
         f"{'; FAILED: ' + '; '.join(report['failed']) if report['failed'] else ''} ({run.run_dir / 'audit'}/report.html)")
    return {"summary": summary, "failed": report["failed"], "fail_on": a.fail_on, "report": "audit/report.html"}


def _mlflow_finish(mlf, run_dir: Path, results: dict[str, Any], step: int, keys: tuple[str, ...], plot: str) -> None:
    """Final figures and the run's files (model included) as artifacts, then the run is closed."""
    final = {f"final/{split}_{k}": results[split][k] for split in ("validation", "test") if split in results for k in keys}
    b = results["budget"]
    final.update({"final/spent_seconds": b["spent_seconds"], "final/spent_cost": b["spent_cost"],
                  "final/tokens_per_second": results["train"]["tokens_per_second"]})
    audit = results.get("audit") or {}
    final.update({f"final/audit_{k}": float(v) for k, v in (audit.get("summary") or {}).items()
                  if isinstance(v, (int, float))})
    mlf.log_metrics(final, step, flush=True)
    mlf.set_tags({"thrifty.stop_reason": results["train"]["stop_reason"],
                  "thrifty.stopped_by_budget": b["stopped_by_budget"],
                  **({"thrifty.audit_failed": "; ".join(audit["failed"]) or "no"} if "failed" in audit else {})})
    for name in ("metrics.json", "train_log.jsonl", f"{plot}_validation.png", f"{plot}_test.png"):
        mlf.log_artifact(run_dir / name)
    mlf.log_artifact(run_dir / "audit", "audit")  # audit.json and report.html, when the audit: section ran
    mlf.log_artifact(run_dir / "model", "model")
    mlf.end()


def _truncate_log(path: Path, last_step: int) -> None:
    """After a resume, steps past the checkpoint are redone: drop their earlier (possibly half-written) lines."""
    import json

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
    """Testing hook: THRIFTY_FAULT_AT_STEP="5:KILL" (kill -9) or "3:INT" (Ctrl-C) after that optimizer step; "5:KILL@1"
    in the process of rank 1 only (a multi-process run)."""
    spec = os.environ.get("THRIFTY_FAULT_AT_STEP")
    if not spec:
        return
    spec, _, rank = spec.partition("@")
    at, _, sig = spec.partition(":")
    if rank and int(rank) != launched()[0]:
        return
    if int(at) == step:
        os.kill(os.getpid(), {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}[sig or "KILL"])
