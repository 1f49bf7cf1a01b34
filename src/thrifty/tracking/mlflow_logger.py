"""MLflow tracking: a run's params, per-step metrics, system figures and artifacts, through MlflowClient.

Off by default (``tracking.mlflow``). On, it writes to a local SQLite store beside the run folders
(``<parent of the run folder>/mlflow.db``, artifacts in ``mlartifacts/`` next to it) unless a
``tracking_uri`` is given, e.g. a tracking server ``http://127.0.0.1:5000``. Metrics are buffered and sent
in batches (at every evaluation, and at least every 10 s), so tracking costs the training loop nothing
measurable. Trials of ``thrifty tune`` are nested under the search's run.

Tracking never stops training: if the server is down at the start, or fails later, thrifty prints one
warning and carries on; every figure is in the run folder anyway (train_log.jsonl, metrics.json).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

FLUSH_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 3.0


def default_uri(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir.resolve().parent / 'mlflow.db')}"


def server_problem(uri: str) -> Optional[str]:
    """None if an HTTP tracking server answers its health check; else why not."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


class MlflowLogger:
    """One MLflow run. Every public method is safe to call after a failure (it then does nothing)."""

    def __init__(self, client, run_id: str, uri: str, run_dir: Path) -> None:
        self.client, self.run_id, self.uri, self.run_dir = client, run_id, uri, run_dir
        self._metrics: list = []
        self._last_flush = time.monotonic()
        self.failed = False

    # ---- creation
    @classmethod
    def start(cls, settings, run_dir: Path, run_name: str, parent_run_id: Optional[str] = None,
              warn=None) -> Optional["MlflowLogger"]:
        """Open a run, or warn once and return None when MLflow is not installed or the server is down."""
        warn = warn or _warn
        uri = settings.tracking_uri or default_uri(run_dir)
        try:
            from mlflow import MlflowClient
        except ImportError:
            warn("tracking.mlflow is on but MLflow is not installed (pip install mlflow); training continues, "
                 f"metrics stay in {run_dir}")
            return None
        problem = server_problem(uri)
        if problem is not None:
            warn(f"MLflow tracking server {uri} is not reachable ({problem}); training continues, metrics are kept "
                 f"in {run_dir} (train_log.jsonl, metrics.json)")
            return None
        # A server that dies mid-run should cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                location = None
                if uri.startswith("sqlite:///"):  # artifacts beside the local store, not in the current folder
                    location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
                experiment_id = client.create_experiment(settings.experiment, artifact_location=location)
            else:
                experiment_id = experiment.experiment_id
            tags = {"mlflow.source.name": "thrifty", "thrifty.run_dir": str(run_dir.resolve())}
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        except Exception as exc:  # any store or network error: tracking is a convenience, training is not
            warn(f"MLflow at {uri} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); training continues, "
                 f"metrics are kept in {run_dir}")
            return None
        return cls(client, run.info.run_id, uri, run_dir)

    # ---- logging
    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        if self.failed:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self.failed = True
            _warn(f"MLflow stopped working while {what} ({type(exc).__name__}); training continues without it, "
                  f"metrics are kept in {self.run_dir}")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._guard("logging params", self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = False) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None)
        if flush or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        pending, self._metrics = self._metrics, []
        self._last_flush = time.monotonic()
        for i in range(0, len(pending), 1000):  # the batch limit
            self._guard("logging metrics", self.client.log_batch, self.run_id, metrics=pending[i : i + 1000])

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        if not path.exists():
            return
        if path.is_dir():
            self._guard(f"uploading {path.name}", self.client.log_artifacts, self.run_id, str(path), artifact_path)
        else:
            self._guard(f"uploading {path.name}", self.client.log_artifact, self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._guard("tagging the run", self.client.set_tag, self.run_id, key, str(value))

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        self._guard("closing the run", self.client.set_terminated, self.run_id, status)


def _warn(message: str) -> None:
    print(f"thrifty: warning: {message}", file=sys.stderr, flush=True)
