"""What thrifty shows while it works, in one place: progress with an ETA, and quiet libraries.

- On an interactive terminal a long stage shows a progress bar on stderr (count, rate, elapsed and ETA).
- When stderr is not a terminal (a log file, CI, a pipe) there are no bars and no carriage returns: a stage that
  took a second or more prints one plain line when it ends (what it did, in how long), and one that runs past a few
  seconds a line at each tenth of the way with its ETA, so a redirected log stays one event per line.
- `--quiet` turns all of it off; results and errors are still printed.
- Libraries' warnings and INFO lines that a user cannot act on (tracer warnings of an ONNX export, MLflow's and
  Alembic's INFO logs, deprecation notices) are hidden unless `--debug`.

The settings are made once per process by the CLI (`configure`); library code asks `progress(...)` for a stage and
never prints bars itself. A Python caller of the API gets plain lines on stderr unless it calls `configure` too.
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
from typing import Iterator, Optional, TypeVar

T = TypeVar("T")

# Loggers of libraries thrifty drives whose INFO lines describe their own housekeeping (a migration applied, a
# store created, an experiment made): shown with --debug.
CHATTY_LOGGERS = ("mlflow", "alembic", "optuna", "urllib3", "httpx", "matplotlib", "PIL", "codecarbon", "onnxruntime",
                  "torch.onnx", "filelock", "huggingface_hub")


@dataclass
class ConsoleSettings:
    quiet: bool = False  # no progress at all
    debug: bool = False  # libraries' warnings and logs shown
    showing: int = 0  # depth of `showing()` blocks: loops over passes show their progress only inside one

    @property
    def interactive(self) -> bool:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


SETTINGS = ConsoleSettings()


def configure(quiet: bool = False, debug: bool = False) -> None:
    """Called once by the CLI: the --quiet and --debug flags, and libraries kept quiet unless --debug."""
    SETTINGS.quiet, SETTINGS.debug = quiet, debug
    if not debug:
        quiet_libraries()


def quiet_libraries() -> None:
    """Python warnings (TracerWarning, FutureWarning, DeprecationWarning, UserWarning of torch, transformers, onnx,
    sklearn, ...: thrifty itself reports through its own lines, never through warnings) and libraries' logs below
    ERROR are hidden; thrifty's own loggers (the server's) keep their levels. Processes started from this one (serve
    workers, training processes) inherit the warning filter through PYTHONWARNINGS."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    logging.getLogger().setLevel(logging.ERROR)  # e.g. onnxruntime's quantiser logs through the root logger
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")  # onnxruntime's C++ log: errors only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorboard's optional TensorFlow
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers' level from this on import
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if "onnxruntime" in sys.modules:
        sys.modules["onnxruntime"].set_default_logger_severity(3)


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

    def close(self) -> None:
        """The stage's one plain line (without a terminal): what it did and how long it took."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.silent and time.perf_counter() - self.started >= self.END_LINE_AFTER_SECONDS:
            count = f" {self._count(self.done)}" if self.total is not None else " done"
            print(f"{self.description}:{count} in {_duration(time.perf_counter() - self.started)}", file=sys.stderr,
                  flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self.bar is not None:  # an error: the bar cleared, no line saying it was done
            self.bar.close()
            self.bar = None


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
