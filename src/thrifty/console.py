"""What thrifty shows while it works, in one place: progress with an ETA, and quiet libraries.

- On an interactive terminal a long stage shows a progress bar on stderr (count, rate, elapsed and ETA).
- When stderr is not a terminal (a log file, CI, a pipe) there are no bars and no carriage returns: a stage that
  took a second or more prints one plain line when it ends (what it did, in how long), and one that runs past a few
  seconds a line at each tenth of the way with its ETA, so a redirected log stays one event per line.
- `--quiet` turns all of it off; results and errors are still printed.
- Libraries' notices that a user cannot act on (deprecation notices, the tracer's warnings of an ONNX export, MLflow's
  and Alembic's INFO lines) are hidden unless `--debug`; warnings that can matter (a RuntimeWarning, scikit-learn's
  ConvergenceWarning, a library's WARNING log line) still show.

The CLI's main() runs each command inside `session(quiet, debug)`, which puts every process-wide setting back when
the command ends (a Python caller of main() keeps its own). Library code asks for a `Progress` (or `passes`, `stage`)
and never prints bars itself; outside a session a Python caller of the API gets the stage lines of `stage()` only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

# Loggers of libraries thrifty drives whose INFO lines describe their own housekeeping (a migration applied, a
# store created, an experiment made): WARNING and above only, unless --debug.
CHATTY_LOGGERS = ("mlflow", "alembic", "optuna", "urllib3", "httpx", "matplotlib", "PIL", "codecarbon", "onnxruntime",
                  "torch.onnx", "filelock", "huggingface_hub")
# Warnings no user can act on: notices of a library's own deprecations and the ONNX tracer's remarks on the model's
# Python control flow (thrifty's export is checked against PyTorch on real texts instead: parity.json).
IGNORED_WARNINGS = [dict(category=DeprecationWarning), dict(category=PendingDeprecationWarning),
                    dict(category=FutureWarning), dict(message=r"Converting a tensor to a Python"),
                    dict(message=r"torch\.tensor results are registered as constants"),
                    dict(module=r"torch\.onnx(\..*)?$")]
# The same for the processes a command starts (serve workers, training processes), which read it from the environment
CHILD_WARNINGS = "ignore::DeprecationWarning,ignore::PendingDeprecationWarning,ignore::FutureWarning"
# MLflow sets its loggers' level from this when it is imported; onnxruntime's and TensorFlow's C++ logs read theirs
QUIET_ENVIRONMENT = {"MLFLOW_LOGGING_LEVEL": "WARNING", "ORT_LOGGING_LEVEL": "3", "TF_CPP_MIN_LOG_LEVEL": "2",
                     "PYTHONWARNINGS": CHILD_WARNINGS}


@dataclass
class ConsoleSettings:
    quiet: bool = False  # no progress at all
    debug: bool = False  # libraries' notices shown
    showing: int = 0  # depth of `showing()` blocks: loops over passes show their progress only inside one

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


SETTINGS = ConsoleSettings()


@contextlib.contextmanager
def session(quiet: bool = False, debug: bool = False) -> Iterator[None]:
    """One CLI command: the --quiet and --debug flags, and libraries' notices hidden unless --debug. Everything
    changed here (warning filters, environment, logger levels, the flags) is put back at the end."""
    saved_flags = (SETTINGS.quiet, SETTINGS.debug)
    saved_environment = {key: os.environ.get(key) for key in QUIET_ENVIRONMENT}
    saved_levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    SETTINGS.quiet, SETTINGS.debug = quiet, debug
    with warnings.catch_warnings():
        if debug:
            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO")  # a registry command shows MLflow's lines too
        else:
            for rule in IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", **rule)
            for key, value in QUIET_ENVIRONMENT.items():
                os.environ.setdefault(key, value)  # a value the user set is theirs
            for name in CHATTY_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            SETTINGS.quiet, SETTINGS.debug = saved_flags
            for key, value in saved_environment.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Around a library call that logs advice through the root logger (onnxruntime's quantiser: "Please consider to
    run pre-processing before quantization"): its WARNING lines hidden, unless --debug."""
    root = logging.getLogger()
    level = root.level
    if not SETTINGS.debug:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """One stage of work of `total` units (None: unknown). Use as a context manager, `update(n)` as units finish."""

    LINE_AFTER_SECONDS = 5.0  # without a terminal, a stage still running after this says how far it is, each tenth
    END_LINE_AFTER_SECONDS = 1.0  # ...and one that took at least this long says so when it ends (a quicker one: no line)

    def __init__(self, description: str, total: Optional[int] = None, unit: str = "item", *, initial: int = 0,
                 enabled: bool = True, leave: bool = False):
        """`initial`: units done before (a resumed run); `enabled=False`: silent (a caller that shows nothing, the
        other processes of a multi-process run); `leave`: the finished bar stays on screen."""
        self.description, self.total, self.unit = description, total, unit
        self.done = self.initial = initial
        self.silent = SETTINGS.quiet or not enabled
        self.started = time.perf_counter()
        self.bar = None
        self.postfix = ""
        self.lock = threading.Lock()  # passes run on several lanes (threads) report here
        self.next_line = math.floor(10 * initial / total + 1) / 10 if total else 0.1  # the next tenth to report
        if not self.silent and SETTINGS.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=description, unit=unit, file=sys.stderr,
                            dynamic_ncols=True, leave=leave, mininterval=0.5)

    def _count(self, n: int) -> str:
        return f"{n:,} {self.unit}{'' if n == 1 else 's'}"

    def update(self, n: int = 1) -> None:
        if self.silent:
            return
        with self.lock:
            self._update(n)

    def _update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.total:
            return
        share, elapsed = self.done / self.total, time.perf_counter() - self.started
        if self.next_line <= share < 1.0:
            self.next_line = math.floor(share * 10 + 1) / 10
            if elapsed >= self.LINE_AFTER_SECONDS:
                rate = (self.done - self.initial) / elapsed  # this session's pace (a resumed run started part-way)
                eta = (self.total - self.done) / rate if rate > 0 else float("nan")
                print(f"{self.description}: {self.done:,}/{self._count(self.total)} ({share:.0%}){self.postfix}, "
                      f"{_duration(elapsed)} so far, ETA {_duration(eta)}", file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        """Figures shown beside the count (loss, tokens/s): on the bar, or in the next plain line."""
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **values)
        self.postfix = "".join(f", {key} {value}" for key, value in values.items())

    def write(self, message: str) -> None:
        """A line of the report (stdout, like the rest of a command's report), printed above the bar."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)  # printed even when silent: it is the report, not progress

    def close(self, failed: bool = False) -> None:
        """The stage's one plain line (without a terminal): what it did and how long it took; `failed`: the bar
        cleared and no line (the error says what happened)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.silent and not failed and time.perf_counter() - self.started >= self.END_LINE_AFTER_SECONDS:
            count = f" {self._count(self.done)}" if self.total is not None else " done"
            print(f"{self.description}:{count} in {_duration(time.perf_counter() - self.started)}", file=sys.stderr,
                  flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def stage(description: str) -> Progress:
    """A stage with no count (loading a model, exporting a graph): on a terminal a bar of elapsed time, otherwise
    its line at the end."""
    return Progress(description, None)


@contextlib.contextmanager
def showing() -> Iterator[None]:
    """Inside: the loops over passes (prediction, evaluation, embedding, writing answers) show their progress. The
    CLI enters it for the commands whose work is those loops; training's own evaluations stay silent in its log."""
    SETTINGS.showing += 1
    try:
        yield
    finally:
        SETTINGS.showing -= 1


def passes(description: str, total: int, unit: str) -> Progress:
    """The progress of one loop over passes: shown inside `showing()`, silent elsewhere (a server, training)."""
    return Progress(description, total, unit, enabled=SETTINGS.showing > 0)
