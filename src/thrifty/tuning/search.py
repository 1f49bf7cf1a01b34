"""`thrifty tune`: hyperparameter search with Optuna over the training recipe.

Each trial is an ordinary ``thrifty train`` run (its own run folder under ``OUT/trials/``) with the trial's
values set on the base config; the test set is never evaluated by a trial, so it is looked at once, at the
end, by the user. TPE samples the space; trials evaluate twice per epoch and poor ones are pruned from those
scores (the median rule from the second evaluation on, by default); the study lives in ``OUT/study.db`` (SQLite), so
``--resume`` continues an interrupted search. A ``budget`` in the config is the budget of the whole search:
each trial gets what is left (and is planned to fit it, see cost/budget.py), and no trial starts once it is
spent. Tokenised data is shared through the token cache, frozen-layer features through the in-process cache.
With ``--multi-objective`` it searches accuracy against cost and plots the Pareto front. The best
configuration is written as ``OUT/best_config.yaml``, which ``thrifty train`` accepts as is.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from thrifty.config import SECTIONS, Config, apply_setting, dump_config, section_types
from thrifty.databases import database_url, shown_url
from thrifty.errors import ConfigError, RunDirError, ThriftyError

STUDY_FILE = "study.db"
PRUNERS = ("median", "asha", "none")
STUDY_NAME = "thrifty"
def default_space(strategy: str, layers: int) -> dict[str, dict[str, Any]]:
    """The search space when the user gives none: the knobs that matter for the configured strategy."""
    from thrifty.strategies import search_space

    return search_space(strategy, layers)


@dataclass(frozen=True)
class Dimension:
    key: str  # section.key of the config
    kind: str  # "int", "float" or "categorical"
    low: Any = None
    high: Any = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[tuple] = None

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def parse_space(raw: dict[str, Any], base: Config) -> list[Dimension]:
    """Check a space against the config: known keys, sensible ranges, and values the config accepts."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("the search space is empty; give at least one key, e.g. train.learning_rate: {low: 1e-5, high: 1e-3, log: true}")
    dims = []
    for key, spec in raw.items():
        section, _, name = str(key).partition(".")
        if section not in SECTIONS or name not in section_types(SECTIONS[section]):
            apply_setting(copy.deepcopy(base), section, name, None)  # raises: unknown key, with the valid ones
        annotation = section_types(SECTIONS[section])[name]
        if not isinstance(spec, dict):
            raise ConfigError(f"search space '{key}': give {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise ConfigError(f"search space '{key}': unknown field(s) {sorted(unknown)}; use low, high, log, step or choices")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"search space '{key}': choices must be a non-empty list")
            for value in choices:
                _check_value(base, section, name, value, key)
            dims.append(Dimension(key, "categorical", choices=tuple(choices)))
            continue
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"search space '{key}': give both low and high (or choices)")
        low, high = spec["low"], spec["high"]
        is_int = _base_type(annotation) is int
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(low, bool):
            raise ConfigError(f"search space '{key}': low and high must be numbers, got {low!r} and {high!r}")
        if not low < high:
            raise ConfigError(f"search space '{key}': low={low} must be below high={high}")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"search space '{key}': a log scale needs low > 0, got {low}")
        if _base_type(annotation) not in (int, float):
            raise ConfigError(f"search space '{key}' is not numeric; give choices: [..] instead of low/high")
        for value in (low, high):
            _check_value(base, section, name, int(value) if is_int else float(value), key)
        dims.append(Dimension(key, "int" if is_int else "float", int(low) if is_int else float(low),
                              int(high) if is_int else float(high), bool(spec.get("log", False)), spec.get("step")))
    return dims


def _base_type(annotation: Any) -> Any:
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args and typing.get_origin(annotation) is not typing.Literal else annotation


def _check_value(base: Config, section: str, name: str, value: Any, key: str) -> None:
    probe = copy.deepcopy(base)
    try:
        apply_setting(probe, section, name, value)
        probe.validate()
    except ConfigError as exc:
        raise ConfigError(f"search space '{key}' allows a value the config rejects: {exc}") from None


def _load_space(path: Optional[str | Path], base: Config, layers: int) -> dict[str, Any]:
    space = default_space(base.strategy.name, layers)
    if path is None:
        return space
    from thrifty.config import load_yaml

    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the search space must be a mapping of config keys to ranges")
    replace = bool(raw.pop("replace_defaults", False))  # true: only the keys in this file are searched
    space = {} if replace else space
    for key, spec in raw.items():
        if spec is None:
            space.pop(key, None)  # `train.dropout: null` leaves that key out of the search
        else:
            space[key] = spec
    return space


# --------------------------------------------------------------------------------------------------


class _NotStarted(Exception):
    """Raised out of a trial that must not run: the rest of the search budget cannot pay for it, or the other
    workers of a shared study already run all its trials."""


@dataclass
class TuneResult:
    output: Path
    best: dict[str, Any]
    summary: dict[str, Any]


# Trials that count towards --trials: finished ones, and ones a worker is running or will run (a retry of a trial whose
# worker died waits in WAITING). A failed trial does not count: it is run again.
def _live_states():
    from optuna.trial import TrialState

    return _done_states() + (TrialState.RUNNING, TrialState.WAITING)


def _done_states():
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def tune(config: Config | str | Path | dict | None = None, *, trials: int = 10, output: str | Path = "runs/tune",
         overrides: Optional[list[str]] = None, space: Optional[str | Path] = None, resume: bool = False,
         multi_objective: bool = False, pruner: str = "median", progress: bool = True, log=print,
         storage: Optional[str] = None, study_name: Optional[str] = None, heartbeat_seconds: int = 60) -> TuneResult:
    """Search hyperparameters for `config`; the Python twin of ``thrifty tune``.

    `storage` (a SQLAlchemy URL, e.g. postgresql://user@host/db) makes the study shared: every worker that runs
    `tune` with the same storage and `study_name` draws trials from it, `trials` counts over all of them, a worker that
    dies has its trial failed by the heartbeat (`heartbeat_seconds`) and re-run by another, and the last worker to
    finish writes the summary and the best config (docs/tuning.md, "Across machines")."""
    import optuna

    from thrifty.cost import budget as budget_mod
    from thrifty.cost.hardware import get_hardware

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # thrifty prints one line per trial itself
    if trials < 1:
        raise ConfigError(f"--trials {trials} must be at least 1")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner} is not known; choose one of: {', '.join(PRUNERS)}")
    if heartbeat_seconds < 1:
        raise ConfigError(f"--heartbeat {heartbeat_seconds} must be at least 1 second")
    out = Path(output).expanduser()
    shared = storage is not None
    name = study_name or out.name  # a shared study's name
    if shared:  # a worker of a shared study: the study holds the config and the space every worker searches
        base, space_raw = _shared_search(config, overrides, space, resume, storage, name, heartbeat_seconds)
    else:
        base, space_raw = _local_search(config, overrides, space, resume, study_name, out)
    dims = parse_space(space_raw, base)
    metric = base.metric  # the task's primary metric unless train.metric names another
    maximize = metric != "loss"
    directions = ["maximize" if maximize else "minimize"] + (["minimize"] if multi_objective else [])

    # The whole search shares one budget; trials draw on what is left.
    hardware = get_hardware("auto", base.cost.price_per_hour)
    limits = budget_mod.limits_for(base, hardware)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        dump_config(base, out / "tune_config.yaml")
        (out / "space.yaml").write_text(yaml.safe_dump(space_raw, sort_keys=False), encoding="utf-8")
    pruner_name = "none" if multi_objective else pruner
    if shared:
        study = _shared_study(storage, name, heartbeat_seconds, directions, base, space_raw, trials, pruner_name)
    else:
        study = _open_study(out / STUDY_FILE, directions, base.train.seed, trials, pruner_name)
    parent = _mlflow_parent(base, out, trials, multi_objective, dims)
    # What the search has spent: this worker's clock plus what earlier sessions saved (one machine), or the sum over
    # every worker's trials, finished and running (a shared study: refreshed before each trial and at each evaluation).
    spent_before = float(study.user_attrs.get("spent_seconds", 0.0))
    flops_before = float(study.user_attrs.get("spent_flops", 0.0))
    tracker = budget_mod.BudgetTracker(limits, started=started, seconds_before=spent_before, flops=flops_before)
    search = _Search(base, dims, metric, maximize, multi_objective, trials, study, tracker, limits, parent, out, log,
                     storage, name, heartbeat_seconds)
    if not shared:
        _fail_stale(study)
    search.refresh_shared_spend()
    live = [t for t in study.trials if t.state in _live_states()]
    if resume or shared:
        log(f"{'joining' if shared else 'resuming'} the search {'study ' + name if shared else 'in ' + str(out)}: "
            f"{sum(t.state.is_finished() for t in live)} trials finished, "
            f"{sum(not t.state.is_finished() for t in live)} running, {max(trials - len(live), 0)} to go")
    log(f"search: {trials} trials over {', '.join(d.key for d in dims)}; objective: "
        + (f"{metric} vs cost (Pareto front)" if multi_objective else f"{'max' if maximize else 'min'} {metric} on validation")
        + ("" if not base.budget.active else f"; budget for the whole search: {format_limits(limits)}"
           + (" of machine time over all workers" if shared and limits.seconds is not None else "")))
    search.run(_progress_bar(trials, len([t for t in live if t.state.is_finished()])) if progress else None)
    return search.finish()


def _shared_search(config, overrides, space, resume: bool, storage: str, name: str,
                   heartbeat_seconds: int) -> tuple[Config, dict[str, Any]]:
    """The config and the space a worker of a shared study searches: the study's, or (the first worker) its own."""
    from thrifty.inputs import as_config
    from thrifty.models.loading import resolve_model

    if resume:
        raise ConfigError("a shared study (--storage) is joined, not resumed: drop --resume (run the same command again)")
    opened = _open_shared(storage, name, heartbeat_seconds)
    stored = opened.user_attrs.get("thrifty_config") if opened is not None else None
    base = as_config(json.loads(stored) if config is None and stored else config, overrides)
    layers = _layers(resolve_model(base.model.name), base)
    space_raw = _load_space(space, base, layers) if stored is None or space is not None else \
        json.loads(opened.user_attrs["thrifty_space"])
    if stored is not None:
        _check_same_search(opened, base, space_raw, name)
    return base, space_raw


def _local_search(config, overrides, space, resume: bool, study_name: Optional[str],
                  out: Path) -> tuple[Config, dict[str, Any]]:
    """The config and the space of a search on this machine: given, or saved in OUT by the search resumed."""
    from thrifty.inputs import as_config
    from thrifty.models.loading import resolve_model

    if study_name is not None:
        raise ConfigError("--study names a study in --storage; without --storage the study is OUT/study.db")
    db = out / STUDY_FILE
    if resume:
        if not db.exists():
            raise RunDirError(f"cannot resume {out}: it has no {STUDY_FILE}; start the search without --resume")
        base = as_config(out / "tune_config.yaml", overrides)
    else:
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"search folder {out} already exists; choose another --output, or add --resume to continue it")
        base = as_config(config, overrides)
    layers = _layers(resolve_model(base.model.name), base)
    space_raw = _load_space(space, base, layers) if not resume else yaml.safe_load((out / "space.yaml").read_text())
    return base, space_raw


def _mlflow_parent(base: Config, out: Path, trials: int, multi_objective: bool, dims: list[Dimension]):
    """One MLflow run for the search (per worker), the trials nested under it; None when MLflow is off."""
    if not base.tracking.mlflow.enabled:
        return None
    from thrifty.tracking.mlflow_logger import MlflowLogger, default_uri

    if base.tracking.mlflow.tracking_uri is None:
        base.tracking.mlflow.tracking_uri = default_uri(out / "search")  # OUT/mlflow.db
    parent = MlflowLogger.start(base.tracking.mlflow, out, f"tune-{out.name}")
    if parent is None:
        base.tracking.mlflow.enabled = False  # warned once; the trials do not try again
    else:
        parent.log_params({"search.trials": trials, "search.multi_objective": multi_objective,
                           **{f"space.{d.key}": d for d in dims}})
    return parent


def _feature_memo():
    from thrifty.models.feature_cache import FeatureMemo

    return FeatureMemo()


@dataclass
class _Search:
    """One worker's search: its trials, one at a time, each an ordinary training run, until the search has its
    trials (over all workers) or its budget is spent; then the summary."""

    base: Config
    dims: list[Dimension]
    metric: str
    maximize: bool
    multi_objective: bool
    trials: int
    study: Any
    tracker: Any  # the whole search's BudgetTracker
    limits: Any
    parent: Any  # the search's MLflow run, or None
    out: Path
    log: Any
    storage: Optional[str]  # a shared study's database; None: OUT/study.db
    name: str
    heartbeat_seconds: int
    stopped_by_budget: bool = False
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # Trials on the same texts and model compute the same frozen-layer features: the last ones are kept for the next
    features: Any = field(default_factory=_feature_memo)

    @property
    def shared(self) -> bool:
        return self.storage is not None

    def refresh_shared_spend(self) -> None:
        if self.shared:
            self.tracker.seconds_before, self.tracker.flops = _study_spent(self.study)
            self.tracker.started = time.perf_counter()

    def run(self, bar) -> None:
        """One trial at a time, until the search has its trials (over all workers) or its budget is spent. A worker
        with nothing left to start waits for the others' trials: if one of them dies, its trial is re-run here."""
        import optuna

        study = self.study
        while not self.stopped_by_budget and not (self.base.budget.active and self.tracker.over(0.0, 0.0) is not None):
            if self.shared:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, and queued again (WAITING)
            now = study.get_trials(deepcopy=False, states=_live_states())
            waiting = any(t.state == optuna.trial.TrialState.WAITING for t in now)
            if len(now) < self.trials or waiting:
                try:
                    study.optimize(self.objective, n_trials=1, catch=())
                except _NotStarted:
                    pass  # the budget ran out (the loop ends) or another worker took the last trial (it waits below)
                if bar is not None:
                    bar.n = len(study.get_trials(deepcopy=False, states=_done_states()))
                    bar.refresh()
                continue
            if not self.shared or not any(t.state == optuna.trial.TrialState.RUNNING for t in now):
                break
            time.sleep(min(5.0, self.heartbeat_seconds))
        if bar is not None:
            bar.close()

    def objective(self, trial) -> Any:
        import optuna

        if self.shared:  # another worker may have taken the last trial between our count and this one's creation
            earlier = [t for t in self.study.get_trials(deepcopy=False, states=_live_states()) if t.number < trial.number]
            if len(earlier) >= self.trials:
                trial.set_user_attr("stop_reason", f"not started: the other workers run the search's {self.trials} trials")
                raise _NotStarted("surplus")
        values = {d.key: d.suggest(trial) for d in self.dims}
        cfg = self._trial_config(values)
        result, spent_by_others = self._train(trial, cfg, values)
        value, cost, stop_reason = self._record(trial, result, spent_by_others)
        if stop_reason == "pruned":
            raise optuna.TrialPruned()
        return (value, cost) if self.multi_objective else value

    def _trial_config(self, values: dict[str, Any]) -> Config:
        """The base config with the trial's values, evaluating twice an epoch, its budget what the search has left."""
        cfg = _with_params(self.base, values)
        if not cfg.train.eval_every_steps and cfg.train.evaluations_per_epoch == 1:
            cfg.train.evaluations_per_epoch = 2  # finer steps for pruning, and for catching each trial's best point
        cfg.budget = dataclasses.replace(self.base.budget, max_minutes=None, max_cost=None, max_flops=None)
        self.refresh_shared_spend()
        left_s, left_f = self.tracker.remaining_seconds(), self.tracker.remaining_flops()
        if left_s is not None:
            cfg.budget.max_minutes = max(left_s, 1e-3) / 60
        if left_f is not None:
            cfg.budget.max_flops = max(left_f, 1.0)
        cfg.validate()
        return cfg

    def _train(self, trial, cfg: Config, values: dict[str, Any]) -> tuple[Any, dict[str, bool]]:
        """The trial's training run, pruned through its evaluations; and whether the workers together spent the
        search's time while it ran."""
        from thrifty.cost.budget import BudgetError
        from thrifty.training.recipe import train_sharing

        study, spent_by_others = self.study, {"hit": False}

        def report(n: int, metrics: dict[str, Any]) -> bool:
            if self.shared and self.limits.seconds is not None and _study_spent(study)[0] >= self.limits.seconds:
                spent_by_others["hit"] = True  # the workers together spent the search's time: stop here, keep the best
                return True
            if self.multi_objective:
                return False  # Optuna prunes single-objective studies only
            trial.report(metrics[self.metric], n)
            return trial.should_prune()

        trials_dir = self.out / "trials"
        run_dir = trials_dir / f"trial-{trial.number:03d}"
        retry_of = study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial") if self.shared else None
        self.log(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
                 + (f" (a re-run of trial {retry_of}, whose worker stopped)" if retry_of is not None else ""))
        trial.set_user_attr("worker", self.worker)
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
        try:
            # The test file is read, so its texts stay out of training as in any run, but never evaluated.
            # Each trial's own log (data report, epochs) goes to trials/trial-NNN.log; one line per trial here.
            trials_dir.mkdir(parents=True, exist_ok=True)
            with open(trials_dir / f"{run_dir.name}.log", "w", encoding="utf-8") as trial_log, \
                    contextlib.redirect_stdout(trial_log):
                result = train_sharing(self.features, cfg, output=run_dir, overwrite=run_dir.exists(), progress=False,
                                       on_evaluation=report, mlflow_parent_run_id=self.parent.run_id if self.parent else None,
                                       evaluate_test=False)
        except BudgetError as exc:
            self.stopped_by_budget = True
            trial.set_user_attr("stop_reason", "not started: the search budget is spent")
            raise _NotStarted(str(exc)) from None
        return result, spent_by_others

    def _record(self, trial, result, spent_by_others: dict[str, bool]) -> tuple[float, Any, str]:
        """What the trial spent and reached, on the trial and the search, with its line; (value, cost, stop reason)."""
        study, tracker, b = self.study, self.tracker, result.metrics["budget"]
        stop_reason = "budget" if spent_by_others["hit"] else result.metrics["train"]["stop_reason"]
        if not self.shared:
            tracker.flops += b["spent_flops"]
            study.set_user_attr("spent_seconds", tracker.spent_seconds)
            study.set_user_attr("spent_flops", tracker.flops)
        cost = b["spent_cost"] if b["spent_cost"] is not None else b["spent_seconds"]
        trial.set_user_attr("run_dir", str((self.out / "trials" / f"trial-{trial.number:03d}").resolve()))
        trial.set_user_attr("seconds", b["spent_seconds"])
        trial.set_user_attr("flops", b["spent_flops"])
        trial.set_user_attr("cost", cost)
        trial.set_user_attr("steps", result.metrics["train"]["steps"])
        trial.set_user_attr("stop_reason", stop_reason)
        trial.set_user_attr("plan", (b["plan"] or {}).get("changes", []))
        self.refresh_shared_spend()
        value = result.metrics["best"]["value"]
        done = len(study.get_trials(deepcopy=False, states=_done_states())) + 1
        self.log(f"trial {trial.number}: {self.metric} {value:.4f} in {b['spent_seconds']:.0f} s"
                 + (f" (pruned after {len(result.metrics['history'])} evaluations)" if stop_reason == "pruned" else "")
                 + f"; search spent {tracker.spent_seconds:.0f} s, {min(done, self.trials)}/{self.trials} trials done"
                 + _eta(study, self.trials, self.shared))
        if b["stopped_by_budget"] or spent_by_others["hit"] or (tracker.over(0.0, 0.0) is not None):
            self.stopped_by_budget = True  # what is left of the budget will not buy a useful trial
        if self.parent:
            self.parent.log_metrics({f"trial/{self.metric}": value, "trial/seconds": b["spent_seconds"],
                                     "search/spent_seconds": tracker.spent_seconds}, trial.number, flush=True)
        return value, cost, stop_reason

    def finish(self) -> TuneResult:
        """The summary and the best config, written by this worker (or, in a shared study, by the first to finish)."""
        out, parent, metric = self.out, self.parent, self.metric
        summarise = lambda write=True: _summarise(self.study, out, self.base, metric, self.maximize,  # noqa: E731
                                                  self.multi_objective, self.tracker, self.stopped_by_budget, write=write)
        if self.shared:
            self.refresh_shared_spend()
            finished = len(self.study.get_trials(deepcopy=False, states=_done_states()))
            writer = _claim_summary(_storage(self.storage, self.heartbeat_seconds).engine, self.name, finished,
                                    f"{self.worker} {out.resolve()}")
            if writer is not None:  # another worker got there first: it wrote tune.json and best_config.yaml
                summary = summarise(write=False)
                summary["best"]["config"] = str(Path(writer.split(" ", 1)[1]) / "best_config.yaml")  # on the writer's machine
                self.log(format_summary(summary).rsplit("\n", 1)[0] + f"\nsummary and best config written by worker {writer}")
                if parent:
                    parent.end()
                return TuneResult(out, summary["best"], summary)
        summary = summarise()
        self.log(format_summary(summary))
        if parent:
            parent.log_metrics({f"best/{metric}": summary["best"]["value"]}, summary["best"]["number"], flush=True)
            for name_ in ("tune.json", "best_config.yaml", "trials.png", "pareto.png"):
                parent.log_artifact(out / name_)
            parent.end()
        return TuneResult(out, summary["best"], summary)


def _progress_bar(total: int, done: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="trial", desc="search", leave=False)


def _eta(study, trials: int, shared: bool) -> str:
    """About how long the trials left will take at the pace of the finished ones (spread over the running workers)."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=_done_states())
    seconds = [t.user_attrs.get("seconds") for t in finished if t.user_attrs.get("seconds") is not None]
    left = trials - len(finished)
    if not seconds or left <= 0:
        return ""
    workers = max(1, len({t.user_attrs.get("worker") for t in study.get_trials(
        deepcopy=False, states=(TrialState.RUNNING,))})) if shared else 1
    eta = sum(seconds) / len(seconds) * left / workers
    return f", ~{eta / 60:.1f} min to go" if eta >= 60 else f", ~{eta:.0f} s to go"


def _rdb_storage(storage: str, heartbeat_seconds: int):
    """Optuna's RDBStorage on the URL, with a heartbeat: a trial whose worker stops beating for 3 heartbeats is failed
    and queued again (RetryHeartbeatStaleTrialCallback) by the next worker that looks. One line when the database is away."""
    import optuna
    import sqlalchemy.exc

    url = database_url(storage)
    kwargs = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgresql") else {}
    try:
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_seconds,
                        grace_period=3 * heartbeat_seconds,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
                # Workers started together on an empty database race to create Optuna's tables (PostgreSQL: a
                # duplicate key in pg_type, or a table that already exists); the loser finds them made on a second look
                if attempt == 2 or not isinstance(exc, sqlalchemy.exc.IntegrityError) and "already exists" not in str(exc):
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError:
        raise ThriftyError(f"no database driver for {shown_url(url)}: pip install 'thrifty[postgres]' (psycopg 3)") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        raise ThriftyError(f"cannot reach the study storage {shown_url(url)}: {first}; check the URL, that the "
                           "database server runs and that this user may connect") from None


_STORAGES: dict[tuple[str, int], Any] = {}  # one engine per URL in this process (a worker opens it twice)


def _storage(storage: str, heartbeat_seconds: int):
    key = (database_url(storage), heartbeat_seconds)
    if key not in _STORAGES:
        _STORAGES[key] = _rdb_storage(storage, heartbeat_seconds)
    return _STORAGES[key]


def _open_shared(storage: str, name: str, heartbeat_seconds: int):
    """The study `name` in `storage` if it exists (None otherwise), to read the config it searches."""
    import optuna

    rdb = _storage(storage, heartbeat_seconds)
    try:
        return optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        return None


def _check_same_search(study, base: Config, space_raw: dict[str, Any], name: str) -> None:
    """A worker must search what the study searches: the same config (but where trials are written) and space."""
    stored = json.loads(study.user_attrs["thrifty_config"])
    mine = _plain(base.to_dict())
    for d in (stored, mine):
        d.pop("output", None)
    if stored != mine:
        from thrifty.tracking.mlflow_logger import flatten

        a, b = flatten("", stored), flatten("", mine)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        k = diff[0] if diff else "?"
        raise ConfigError(f"this worker's config differs from study {name}'s ({k}: {b.get(k)!r} here, {a.get(k)!r} in the "
                          f"study{f', and {len(diff) - 1} more' if len(diff) > 1 else ''}); give the same config, or none "
                          "to search the study's")
    if json.loads(study.user_attrs["thrifty_space"]) != _plain(space_raw):
        raise ConfigError(f"this worker's --space differs from study {name}'s; give the same file, or none to use the study's")


def _shared_study(storage: str, name: str, heartbeat_seconds: int, directions: list[str], base: Config,
                  space_raw: dict[str, Any], trials: int, pruner_name: str):
    """The shared study, created by the first worker (which stores the config and the space in it)."""
    import optuna

    rdb = _storage(storage, heartbeat_seconds)
    try:
        study = optuna.create_study(storage=rdb, study_name=name, load_if_exists=True, directions=directions,
                                    sampler=_sampler(base.train.seed, trials), pruner=_pruner(pruner_name))
    except ValueError as exc:
        raise ThriftyError(f"study {name} in {shown_url(database_url(storage))} does not match this search ({exc}); use another --study") from None
    if "thrifty_config" not in study.user_attrs:
        study.set_user_attr("thrifty_config", json.dumps(_plain(base.to_dict()), sort_keys=True))
        study.set_user_attr("thrifty_space", json.dumps(_plain(space_raw), sort_keys=True))
    else:  # checked before anything was written when the study was there; this catches one made since by another worker
        _check_same_search(study, base, space_raw, name)
    return study


def _plain(value: Any) -> Any:
    """As JSON reads it back (tuples become lists): what the study stores, so that a comparison is like for like."""
    return json.loads(json.dumps(value, default=str))


def _study_spent(study) -> tuple[float, float]:
    """Seconds and FLOPs the trials of every worker have spent: finished trials' own figures plus the time running
    ones have run so far (FLOPs count when a trial ends)."""
    import datetime

    from optuna.trial import TrialState

    now, seconds, flops = datetime.datetime.now(), 0.0, 0.0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING and t.datetime_start is not None:
            seconds += max(0.0, (now - t.datetime_start).total_seconds())
        else:
            seconds += float(t.user_attrs.get("seconds") or 0.0)
            flops += float(t.user_attrs.get("flops") or 0.0)
    return seconds, flops


def _claim_summary(engine, name: str, finished: int, me: str) -> Optional[str]:
    """Exactly one worker writes the summary of a shared search: the first to insert its row (the table's primary
    key refuses the others) in the study's database (`engine`). None when it is this worker; else who did."""
    import sqlalchemy as sa

    table = sa.Table("thrifty_tune_summaries", sa.MetaData(),
                     sa.Column("study_name", sa.String(512), primary_key=True),
                     sa.Column("finished_trials", sa.Integer, primary_key=True),
                     sa.Column("writer", sa.String(2048), nullable=False))
    table.create(engine, checkfirst=True)
    try:
        with engine.begin() as connection:
            connection.execute(table.insert().values(study_name=name, finished_trials=finished, writer=me))
        return None
    except sa.exc.IntegrityError:
        with engine.connect() as connection:
            return connection.execute(sa.select(table.c.writer).where(
                table.c.study_name == name, table.c.finished_trials == finished)).scalar_one()


def format_limits(limits) -> str:
    parts = []
    if limits.seconds is not None:
        parts.append(f"{limits.seconds / 60:.1f} min")
    if limits.flops is not None:
        parts.append(f"{limits.flops / 1e12:.1f} TFLOP")
    return ", ".join(parts)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _layers(model_path: str, config: Config) -> int:
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=config.model.trust_remote_code),
                       "num_hidden_layers", 2))


def _sampler(seed: int, trials: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 4)))


def _pruner(pruner_name: str):
    import optuna

    # Trials evaluate twice per epoch; neither pruner judges a trial before its 2nd evaluation (one epoch):
    # earlier scores favour whatever learns fastest at first, not what ends best (benchmarks/results/tune_sst2_asha.md).
    return {
        # A trial stops when its score is below the median of earlier trials' scores at the same evaluation.
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        # Asynchronous successive halving: a trial goes past its 2nd, 6th, 18th ... evaluation only if it is in
        # the top third of the trials that got there (the first trials: only if the best so far). Cheaper, harsher.
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        "none": optuna.pruners.NopPruner,
    }[pruner_name]()


def _open_study(db: Path, directions: list[str], seed: int, trials: int, pruner_name: str):
    import optuna

    sampler, pruner = _sampler(seed, trials), _pruner(pruner_name)
    try:
        study = optuna.create_study(storage=f"sqlite:///{db}", study_name=STUDY_NAME, load_if_exists=True,
                                    sampler=sampler, pruner=pruner, directions=directions)
        _ = study.trials  # reads every table: a damaged file fails here, not halfway through the search
    except ValueError as exc:
        raise ThriftyError(f"the study in {db} does not match this search ({exc}); use another --output") from None
    except Exception as exc:  # sqlalchemy / sqlite errors: the file is not a readable study
        if isinstance(exc, ThriftyError):
            raise
        raise ThriftyError(f"the study database {db} is damaged or not an Optuna study ({type(exc).__name__}); "
                           f"move it away and start the search again (trial folders are kept)") from None
    return study


def _fail_stale(study) -> None:
    """Trials left RUNNING by an interrupted search are marked failed so that they are run again."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def _summarise(study, out: Path, base: Config, metric: str, maximize: bool, multi: bool, tracker,
               stopped_by_budget: bool, write: bool = True) -> dict[str, Any]:
    import optuna

    from thrifty.runs.run_dir import write_json

    rows = []
    for t in study.trials:
        pick = max if maximize else min  # a pruned trial's best intermediate score
        value = (t.values[0] if t.values else None) if t.state == optuna.trial.TrialState.COMPLETE else (
            pick(t.intermediate_values.values()) if t.intermediate_values else None)
        not_started = str(t.user_attrs.get("stop_reason", "")).startswith("not started")
        rows.append({"number": t.number, "state": "not_started" if not_started else t.state.name.lower(),
                     "value": value, "params": t.params,
                     **{k: t.user_attrs.get(k) for k in ("seconds", "flops", "cost", "steps", "stop_reason", "plan", "run_dir",
                                                         "worker", "retry_of")}})
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ThriftyError("no trial finished within the search budget; raise budget.max_minutes (or max_flops) or --trials")
    if multi:
        front = study.best_trials
        best = max(front, key=lambda t: t.values[0] if maximize else -t.values[0])
    else:
        front, best = [], study.best_trial
    best_config = _best_config(base, best.params, out)
    if write:
        dump_config(best_config, out / "best_config.yaml")
    summary = {
        "metric": metric, "direction": "maximize" if maximize else "minimize", "multi_objective": multi,
        "trials": rows,
        "best": {"number": best.number, "value": best.values[0], "params": best.params,
                 "run_dir": best.user_attrs.get("run_dir"), "config": str(out / "best_config.yaml")},
        "pareto_front": [{"number": t.number, "value": t.values[0], "cost": t.values[1]} for t in front],
        "spent_seconds": round(tracker.spent_seconds, 1), "spent_flops": tracker.flops,
        "limit_seconds": tracker.limits.seconds, "limit_flops": tracker.limits.flops,
        "stopped_by_budget": stopped_by_budget,
        "counts": {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail", "not_started")},
    }
    if write:
        write_json(out / "tune.json", summary)
        _plot(summary, out, multi)
    return summary


def _with_params(base: Config, params: dict[str, Any]) -> Config:
    """A copy of `base` with a trial's values (keys are section.key)."""
    config = copy.deepcopy(base)
    for key, value in params.items():
        section, _, name = key.partition(".")
        apply_setting(config, section, name, value)
    return config


def _best_config(base: Config, params: dict[str, Any], out: Path) -> Config:
    best = _with_params(base, params)
    best.budget = type(base.budget)()  # the budget was the search's, not this run's
    best.output.dir = str(out / "best")
    return best.validate()


def _plot(summary: dict[str, Any], out: Path, multi: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["trials"] if r["value"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    if multi:
        xs = [r["cost"] for r in rows]
        ax.scatter(xs, [r["value"] for r in rows], color="0.6", label="trials")
        front = sorted(summary["pareto_front"], key=lambda r: r["cost"])
        ax.plot([r["cost"] for r in front], [r["value"] for r in front], "o-", color="C3", label="Pareto front")
        ax.set_xlabel("cost of the trial")
        ax.set_ylabel(f"validation {summary['metric']}")
        ax.set_title("accuracy vs cost")
        path = out / "pareto.png"
    else:
        for state, colour in (("complete", "C0"), ("pruned", "0.6")):
            pts = [r for r in rows if r["state"] == state]
            ax.scatter([r["number"] for r in pts], [r["value"] for r in pts], color=colour, label=state)
        best, running = [], None
        for r in sorted((r for r in rows if r["state"] == "complete"), key=lambda r: r["number"]):
            better = running is None or (r["value"] > running if summary["direction"] == "maximize" else r["value"] < running)
            running = r["value"] if better else running
            best.append((r["number"], running))
        if best:
            ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="C3", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {summary['metric']}")
        ax.set_title("hyperparameter search")
        path = out / "trials.png"
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_summary(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    b = summary["best"]
    lines = [f"search done: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed trials in "
             f"{summary['spent_seconds']:.0f} s" + (" (stopped by the budget)" if summary["stopped_by_budget"] else ""),
             f"best: trial {b['number']}, validation {summary['metric']} {b['value']:.4f}: "
             + ", ".join(f"{k}={_fmt(v)}" for k, v in b["params"].items())]
    if summary["multi_objective"]:
        lines.append("Pareto front (validation, cost): " + "; ".join(
            f"trial {r['number']} {r['value']:.4f} / {r['cost']:.4g}" for r in summary["pareto_front"]))
    lines.append(f"best config: {b['config']}  (train it with: thrifty train {b['config']})")
    return "\n".join(lines)
