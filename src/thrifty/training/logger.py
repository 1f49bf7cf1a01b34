"""Everything a run reports while it trains, behind one object: train_log.jsonl, TensorBoard, MLflow, the
progress bar (with its ETA) and the lines printed between its updates.

On a GPU every `.item()` makes the CPU wait for the GPU, so per-step losses stay on the device and are read
back together every `sync_every` steps (and before every evaluation, checkpoint and stop). On the CPU there is
nothing to wait for: every step is logged as it ends, with its exact time.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from thrifty.console import Progress
from thrifty.training.state import LoopState


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class RunLogger:
    def __init__(self, run_dir: Path, config, *, total_steps: int, state: LoopState, resumed: bool, progress: bool,
                 sync_every: int, metric_keys: tuple[str, ...], mlflow=None, writes: bool = True) -> None:
        """`writes=False` (the other processes of a multi-process run): the timings are kept, nothing is written."""
        self.run_dir = run_dir
        self.metric_keys = metric_keys
        self.sync_every = sync_every
        self.mlflow = mlflow
        self.writer = None
        if config.tracking.tensorboard and writes:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                        purge_step=state.global_step if resumed else None)
        # A bar with the ETA on a terminal; in a redirected log a plain line at each tenth of the run (console.Progress)
        self.bar = Progress("train", total_steps, "step", initial=state.global_step, enabled=progress and writes,
                            leave=True)
        self.file = open(run_dir / "train_log.jsonl" if writes else os.devnull, "a", encoding="utf-8")
        self.pending: list[tuple[dict[str, Any], torch.Tensor, Optional[torch.Tensor]]] = []
        self.window_start = time.perf_counter()

    def say(self, message: str) -> None:
        """A line for the person watching, printed without breaking the progress bar."""
        self.bar.write(message)

    # ---- steps
    def start_window(self) -> None:
        """Timing windows cover training steps only: evaluation and checkpoint time stay out of them."""
        if not self.pending:
            self.window_start = time.perf_counter()

    def step(self, record: dict[str, Any], loss: torch.Tensor, grad_norm: Optional[torch.Tensor]) -> None:
        self.pending.append((record, loss, grad_norm))
        self.bar.update(1)

    def due(self) -> bool:
        return len(self.pending) >= self.sync_every

    def flush_steps(self, state: LoopState, tracker, stops) -> None:
        """Read the pending losses back (the one wait for the device) and write them everywhere."""
        if not self.pending:
            return
        values = torch.stack([torch.stack([loss, norm if norm is not None else torch.zeros_like(loss)])
                              for _, loss, norm in self.pending]).tolist()
        elapsed = time.perf_counter() - self.window_start
        state.step_seconds += elapsed
        stops.recent_step_seconds.append(elapsed / len(self.pending))
        tps = state.tokens_seen / max(state.step_seconds, 1e-9)
        for (record, _, norm), (loss, grad_norm) in zip(self.pending, values):
            record.update(loss=loss, grad_norm=grad_norm if norm is not None else None,
                          seconds=round(elapsed / len(self.pending), 4), tokens_per_second=round(tps, 1))
            self.file.write(json.dumps(record) + "\n")
            if self.writer:
                self.writer.add_scalar("train/loss", loss, record["step"])
                self.writer.add_scalar("train/lr", record["lr"], record["step"])
                self.writer.add_scalar("train/tokens_per_second", tps, record["step"])
            if self.mlflow:
                self.mlflow.log_metrics({"train/loss": loss, "train/lr": record["lr"], "train/grad_norm": record["grad_norm"],
                                         "system/tokens_per_second": tps, "system/spent_seconds": tracker.spent_seconds,
                                         "system/cost_so_far": tracker.cost_so_far(), "system/peak_rss_gib": peak_rss_gib()},
                                        record["step"])
        self.bar.set_postfix(epoch=self.pending[-1][0]["epoch"], loss=f"{values[-1][0]:.4f}", tok_s=f"{tps:,.0f}")
        self.pending.clear()

    def flush_file(self) -> None:
        self.file.flush()

    # ---- evaluations
    def evaluation(self, step: int, epoch_done: float, metrics: dict[str, Any], summary: str, improved: bool) -> None:
        if self.writer:
            for key in self.metric_keys:
                self.writer.add_scalar(f"validation/{key}", metrics[key], step)
        if self.mlflow:
            self.mlflow.log_metrics({f"validation/{k}": metrics[k] for k in self.metric_keys}, step, flush=True)
        self.say(f"step {step} (epoch {int(math.ceil(epoch_done)) or 1}): validation {summary}"
                 + ("  * best" if improved else ""))

    def final(self, results: dict[str, Any], step: int) -> None:
        if self.writer:
            for split in ("validation", "test"):
                if split in results:
                    for key in self.metric_keys:
                        self.writer.add_scalar(f"final/{split}_{key}", results[split][key], step)
            self.writer.close()

    def close(self, status: Optional[str] = None, failed: bool = False) -> None:
        """Close the files (every exit path); `status` also ends the MLflow run (KILLED, FAILED); `failed`: the loop
        ended by an error or Ctrl-C (no progress line saying it finished)."""
        self.bar.close(failed=failed)
        self.file.close()
        if self.writer:
            self.writer.flush()
        if status and self.mlflow:
            self.mlflow.end(status)
