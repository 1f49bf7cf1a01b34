"""A thrifty model registry on MLflow's Model Registry: versions with their provenance, aliases that say which is live.

`register(RUN_DIR, NAME)` copies a finished run's model folder into MLflow (a run of the experiment
`thrifty-registry`, its artifacts under `model/`) and then creates a model version of NAME that carries, as tags, the
manifest's task, labels, data fingerprint, weights hash, strategy, base model and final metrics, and its parent version
(the registered version whose weights a warm start began from). `promote(NAME, VERSION)` moves the `champion` alias;
`rollback(NAME)` moves it back to the champion before. Aliases, not stages (deprecated since MLflow 2.9).

MLflow keeps no history of alias moves, so every move is also written as a registered-model tag
`thrifty.move.<UTC time>-<random>`: JSON with the alias, the version it left and the one it points to now, who or what
decided it (`by`: a person as user@host, or `thrifty retrain`) and why. A move is written as `pending`, then the alias
is set, then the move is marked `done`: after a crash in between, a pending move counts as done only when the alias
points where it says, so the history never claims a move the alias does not show.

A version is created only after its files are uploaded: a crash during `register` leaves at most an MLflow run with
no version, never a version without files; registering the same weights again returns the existing version.

The store: `uri`, else $THRIFTY_REGISTRY_URI, else $MLFLOW_TRACKING_URI, else SQLite at ./runs/mlflow.db, the store
that `tracking.mlflow` fills for runs in the default output folder, so a team's MLflow shows models and runs together.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from thrifty.errors import ConfigError, ModelError, ThriftyError
from thrifty.runs.manifest import model_folder, read_manifest, weights_sha256

EXPERIMENT = "thrifty-registry"
CHAMPION = "champion"
CHALLENGER = "challenger"
URI_ENV = "THRIFTY_REGISTRY_URI"
DEFAULT_STORE = Path("runs") / "mlflow.db"
MOVE_PREFIX = "thrifty.move."
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")


class RegistryError(ThriftyError):
    """The registry cannot be reached, or a name, version or alias in it is wrong."""


def registry_uri(uri: Optional[str] = None) -> str:
    """The store to use: the one given, else $THRIFTY_REGISTRY_URI, else $MLFLOW_TRACKING_URI, else ./runs/mlflow.db."""
    chosen = uri or os.environ.get(URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return chosen
    return f"sqlite:///{(Path.cwd() / DEFAULT_STORE).resolve()}"


def parse_model_uri(uri: str) -> tuple[str, Optional[str], Optional[int]]:
    """models:/NAME@ALIAS -> (NAME, ALIAS, None); models:/NAME/3 -> (NAME, None, 3)."""
    match = MODEL_URI.match(uri)
    if match is None:
        raise RegistryError(f"{uri!r} is not a registry model URI; use models:/NAME@champion (follows the alias) or "
                            "models:/NAME/VERSION (one version)")
    version = match.group("version")
    return match.group("name"), match.group("alias"), int(version) if version else None


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise RegistryError(f"registered model name {name!r} is not allowed; use letters, digits, '.', '_' and '-' "
                            "(up to 128), starting with a letter or digit, e.g. sst2-sentiment")
    return name


def decided_by() -> str:
    """Who moves an alias by hand: user@host (retrain passes its own `by`)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Version:
    """One registered model version, as the registry shows it."""

    name: str
    version: int
    source: str
    run_id: Optional[str]
    created: str
    aliases: list[str]
    tags: dict[str, str]
    description: str = ""

    @property
    def task(self) -> str:
        return self.tags.get("thrifty.task", "")

    @property
    def labels(self) -> list[str]:
        return json.loads(self.tags.get("thrifty.labels", "[]"))

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.tags.get("thrifty.metrics", "{}"))

    @property
    def parent_version(self) -> Optional[int]:
        value = self.tags.get("thrifty.parent_version", "")
        return int(value) if value else None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "aliases": self.aliases, "created": self.created,
                "task": self.task, "labels": self.labels, "metrics": self.metrics,
                "parent_version": self.parent_version, "data_fingerprint": self.tags.get("thrifty.data_fingerprint"),
                "weights_sha256": self.tags.get("thrifty.weights_sha256"),
                "train_examples": _int_or_none(self.tags.get("thrifty.train_examples")),
                "strategy": self.tags.get("thrifty.strategy"), "base_model": self.tags.get("thrifty.base_model"),
                "run_dir": self.tags.get("thrifty.run_dir"), "registered_by": self.tags.get("thrifty.registered_by"),
                "source": self.source, "mlflow_run_id": self.run_id, "description": self.description}


@dataclass
class Move:
    """One alias move: recorded in the registry before and after the alias itself changes."""

    key: str
    alias: str
    previous: Optional[int]  # the version the alias left (None: it was new)
    version: int
    by: str
    reason: str
    at: str
    state: str = "done"  # "pending" until the alias is set; see the module docstring
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"alias": self.alias, "from": self.previous, "to": self.version, "by": self.by,
                           "reason": self.reason, "at": self.at, "state": self.state, **self.extra})

    def summary(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": self.previous, "to": self.version, "by": self.by, "reason": self.reason,
                "at": self.at, **self.extra}


def _alias_versions(model) -> dict[str, int]:
    """Where a registered model's aliases point: alias -> version number."""
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}


def _base_name(manifest: dict[str, Any]) -> str:
    base = manifest.get("base_model") or {}
    return str(base.get("name") if isinstance(base, dict) else base)


def _int_or_none(value: Optional[str]) -> Optional[int]:
    return int(value) if value not in (None, "") else None


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """The registry at one store. Every method raises RegistryError (one line, exit 2) for what a user can fix."""

    def __init__(self, uri: Optional[str] = None, *, create: bool = False) -> None:
        """`create`: a local SQLite store that does not exist yet is made (register does; reads refuse, naming it)."""
        self.uri = registry_uri(uri)
        local = self._local_sqlite_path()
        if local is not None and not local.exists():
            if not create:
                raise RegistryError(f"no model registry at {local} (nothing registered yet, or another store is meant): "
                                    "register a model with `thrifty registry register RUN_DIR --name NAME`, or point "
                                    f"to the store with --registry URI or ${URI_ENV}")
            local.parent.mkdir(parents=True, exist_ok=True)
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ConfigError("the model registry needs MLflow: pip install mlflow") from None
        from thrifty.tracking.mlflow_logger import server_problem

        problem = server_problem(self.uri)
        if problem is not None:
            raise RegistryError(f"the model registry at {self.uri} cannot be reached ({problem}); start the MLflow "
                                f"server, or point to another store with --registry URI or ${URI_ENV}")
        # a store that goes away mid-call should cost seconds, not MLflow's default minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        except Exception as exc:  # noqa: BLE001 - a store MLflow cannot open: name it
            raise RegistryError(f"the model registry at {self.uri} cannot be opened ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None

    def _local_sqlite_path(self) -> Optional[Path]:
        return Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None

    def _call(self, what: str, fn, *args, **kwargs):
        """An MLflow call; its failures become one line naming the store (a missing name is the caller's job)."""
        try:
            return fn(*args, **kwargs)
        except ThriftyError:
            raise
        except Exception as exc:  # noqa: BLE001
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException) and getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(f"the model registry at {self.uri} failed while {what} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200]})") from None

    # ---- reading
    def _registered(self, name: str):
        model = self._existing_model(_check_name(name))
        if model is None:
            raise RegistryError(f"no registered model named {name!r} in {self.uri}; see `thrifty registry list`")
        return model

    def _version(self, mv, aliases: Optional[list[str]] = None) -> Version:
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds")
        return Version(mv.name, int(mv.version), mv.source, mv.run_id, created,
                       list(aliases if aliases is not None else getattr(mv, "aliases", []) or []),
                       dict(mv.tags or {}), mv.description or "")

    def names(self) -> list[dict[str, Any]]:
        """Every registered model: its task, labels, number of versions, and where its aliases point."""
        models = self._call("listing registered models", self.client.search_registered_models, max_results=1000)
        out = []
        for model in models:
            tags = dict(model.tags or {})
            versions = self.versions(model.name)
            out.append({"name": model.name, "task": tags.get("thrifty.task"),
                        "labels": json.loads(tags.get("thrifty.labels", "[]")), "versions": len(versions),
                        "latest": max((v.version for v in versions), default=None),
                        "aliases": _alias_versions(model)})
        return sorted(out, key=lambda m: m["name"])

    def versions(self, name: str) -> list[Version]:
        """Every version of NAME, newest first."""
        found = self._call(f"listing versions of {name}", self.client.search_model_versions, f"name='{name}'")
        aliases = self._aliases(name)
        by_version: dict[int, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        return sorted((self._version(mv, sorted(by_version.get(int(mv.version), []))) for mv in found),
                      key=lambda v: -v.version)

    def _aliases(self, name: str) -> dict[str, int]:
        return _alias_versions(self._registered(name))

    def get(self, name: str, version: int) -> Version:
        from mlflow.exceptions import MlflowException

        aliases = self._aliases(name)
        try:
            mv = self._call(f"reading {name} version {version}", self.client.get_model_version, name, str(version))
        except MlflowException:
            known = ", ".join(str(v.version) for v in reversed(self.versions(name))) or "none"
            raise RegistryError(f"{name} has no version {version} (versions: {known})") from None
        by = [alias for alias, v in aliases.items() if v == int(version)]
        return self._version(mv, sorted(by))

    def resolve(self, name: str, alias: str = CHAMPION) -> Version:
        """The version ALIAS points to; a clear error when it points nowhere."""
        aliases = self._aliases(name)
        if alias not in aliases:
            hint = (f"promote one: thrifty registry promote {name} VERSION" if alias == CHAMPION
                    else f"aliases of {name}: {', '.join(sorted(aliases)) or 'none'}")
            raise RegistryError(f"{name} has no {alias!r} alias yet; {hint}")
        return self.get(name, aliases[alias])

    def version_for_uri(self, uri: str) -> Version:
        name, alias, version = parse_model_uri(uri)
        return self.resolve(name, alias) if alias else self.get(name, version)

    def history(self, name: str) -> list[Move]:
        """The alias moves of NAME, oldest first (pending moves the alias does not show are left out)."""
        model = self._registered(name)
        aliases = _alias_versions(model)
        moves = []
        for key, value in sorted((model.tags or {}).items()):
            if not key.startswith(MOVE_PREFIX):
                continue
            raw = json.loads(value)
            extra = {k: v for k, v in raw.items() if k not in ("alias", "from", "to", "by", "reason", "at", "state")}
            moves.append(Move(key, raw["alias"], raw["from"], raw["to"], raw["by"], raw["reason"], raw["at"],
                              raw.get("state", "done"), extra))
        kept = []
        for i, move in enumerate(moves):
            later = any(m.alias == move.alias for m in moves[i + 1:])
            if move.state == "pending" and (later or aliases.get(move.alias) != move.version):
                continue  # the process stopped before the alias moved: it did not happen
            kept.append(move)
        return kept

    def show(self, name: str) -> dict[str, Any]:
        model = self._registered(name)
        tags = dict(model.tags or {})
        return {"name": name, "store": self.uri, "task": tags.get("thrifty.task"),
                "labels": json.loads(tags.get("thrifty.labels", "[]")), "aliases": self._aliases(name),
                "versions": [v.summary() for v in self.versions(name)],
                "moves": [m.summary() for m in self.history(name)]}

    # ---- writing
    def register(self, run_dir: str | Path, name: str, *, description: Optional[str] = None,
                 by: Optional[str] = None) -> tuple[Version, bool]:
        """(the version, True) for a new one; (the existing version, False) when these weights are registered already."""
        _check_name(name)
        folder = model_folder(run_dir)  # refuses an unfinished run, naming its status and how to resume it
        manifest = read_manifest(folder)
        weights = weights_sha256(folder)
        if weights is None:
            raise ModelError(f"{folder} has no safetensors weights; register a model folder saved by thrifty train")
        labels = [str(label) for label in manifest.get("labels") or []]
        task = manifest["task"]
        existing = self._existing_model(name)
        versions = self.versions(name) if existing is not None else []
        if existing is not None:
            tags = dict(existing.tags or {})
            if tags.get("thrifty.task") and tags["thrifty.task"] != task:
                raise RegistryError(f"{name} holds {tags['thrifty.task']} models and {folder} is a {task} model; "
                                    "register it under another name")
            known = json.loads(tags.get("thrifty.labels", "null"))
            if known is not None and known != labels:
                raise RegistryError(f"{name} holds models with labels {_short(known)} and {folder} has "
                                    f"{_short(labels)}; register it under another name")
            for version in versions:
                if version.tags.get("thrifty.weights_sha256") == weights:
                    return version, False
        parent = _parent_version(versions, manifest)
        by = by or decided_by()
        run_id = self._upload(folder, manifest, name, weights)
        if existing is None:
            self._call(f"creating {name}", self.client.create_registered_model, name,
                       tags={"thrifty.task": task, "thrifty.labels": json.dumps(labels)},
                       description=f"A {task} model fine-tuned by thrifty; labels: {_short(labels)}")
        data = manifest.get("data") or {}
        metrics = manifest.get("metrics") or {}
        tags = {"thrifty.task": task, "thrifty.labels": json.dumps(labels), "thrifty.weights_sha256": weights,
                "thrifty.data_fingerprint": str(data.get("fingerprint") or ""),
                "thrifty.train_examples": str(data.get("train_examples") or ""),
                "thrifty.train_file": str(data.get("train_file") or ""),
                "thrifty.strategy": str(manifest.get("strategy") or ""),
                "thrifty.base_model": _base_name(manifest),
                "thrifty.parent_version": str(parent or ""), "thrifty.metrics": json.dumps(metrics),
                "thrifty.run_dir": str(Path(run_dir).expanduser().resolve()), "thrifty.registered_by": by,
                "thrifty.manifest_created": str(manifest.get("created") or "")}
        source = self._call("reading the uploaded run", self.client.get_run, run_id).info.artifact_uri.rstrip("/") + "/model"
        mv = self._call(f"creating a version of {name}", self.client.create_model_version, name, source, run_id=run_id,
                        tags=tags, description=description or _describe(manifest))
        mv = self._wait_ready(name, mv)
        return self._version(mv, []), True

    def _existing_model(self, name: str):
        from mlflow.exceptions import MlflowException

        try:
            return self._call(f"reading {name}", self.client.get_registered_model, name)
        except MlflowException:
            return None

    def _upload(self, folder: Path, manifest: dict[str, Any], name: str, weights: str) -> str:
        """An MLflow run holding the model folder (artifacts `model/`), its metrics and where it came from."""
        from mlflow.entities import Metric, Param, RunTag

        experiment = self._call("reading the experiment", self.client.get_experiment_by_name, EXPERIMENT)
        if experiment is None:
            location = None
            local = self._local_sqlite_path()
            if local is not None:  # artifacts beside the local store (as tracking.mlflow does), not in the cwd
                location = (local.parent / "mlartifacts").resolve().as_uri()
            experiment_id = self._call("creating the experiment", self.client.create_experiment, EXPERIMENT,
                                       artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        run_name = folder.parent.name if folder.name == "model" else folder.name
        run = self._call("creating a run", self.client.create_run, experiment_id, run_name=f"{name}:{run_name}",
                         tags={"mlflow.source.name": "thrifty registry", "thrifty.weights_sha256": weights})
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(f"{split}.{key}", float(value), now, 0)
                   for split, values in (manifest.get("metrics") or {}).items() if isinstance(values, dict)
                   for key, value in values.items() if isinstance(value, (int, float))]
        params = [Param("task", manifest["task"]), Param("strategy", str(manifest.get("strategy"))),
                  Param("labels", str(len(manifest.get("labels") or []))),
                  Param("base_model", _base_name(manifest)),
                  Param("train_examples", str((manifest.get("data") or {}).get("train_examples")))]
        tags = [RunTag("thrifty.model_folder", str(folder.resolve()))]
        try:
            self._call("logging the run", self.client.log_batch, run_id, metrics=metrics[:1000], params=params,
                       tags=tags)
            self._call("uploading the model folder", self.client.log_artifacts, run_id, str(folder), "model")
        except ThriftyError:
            self._terminate(run_id, "FAILED")
            raise
        self._terminate(run_id, "FINISHED")
        return run_id

    def _terminate(self, run_id: str, status: str) -> None:
        try:
            self.client.set_terminated(run_id, status)
        except Exception:  # noqa: BLE001 - the run's status is cosmetic; the version decides
            pass

    def _wait_ready(self, name: str, mv, timeout: float = 60.0):
        """A tracking server may create a version asynchronously: wait until it is READY."""
        deadline = time.monotonic() + timeout
        while str(getattr(mv, "status", "READY")) not in ("READY", "ModelVersionStatus.READY") and time.monotonic() < deadline:
            time.sleep(0.5)
            mv = self._call("waiting for the version", self.client.get_model_version, name, mv.version)
        return mv

    def promote(self, name: str, version: int, *, alias: str = CHAMPION, by: Optional[str] = None,
                reason: str = "", extra: Optional[dict[str, Any]] = None) -> Move:
        """Point ALIAS of NAME at VERSION (same task and labels as the model: checked), recording the move."""
        target = self.get(name, version)
        model_tags = dict(self._registered(name).tags or {})
        if model_tags.get("thrifty.task") and target.task != model_tags["thrifty.task"]:
            raise RegistryError(f"{name} version {version} is a {target.task or 'non-thrifty'} model and {name} serves "
                                f"{model_tags['thrifty.task']}; promote a version of that task")
        known = json.loads(model_tags.get("thrifty.labels", "null"))
        if known is not None and target.labels != known:
            raise RegistryError(f"{name} version {version} has labels {_short(target.labels)}, not {name}'s "
                                f"{_short(known)}; a server and its clients expect those labels")
        previous = self._aliases(name).get(alias)
        return self._move(name, alias, previous, int(version), by or decided_by(), reason, extra or {})

    def rollback(self, name: str, *, alias: str = CHAMPION, by: Optional[str] = None, reason: str = "") -> Move:
        """Move ALIAS back to the version it pointed to before its latest move."""
        current = self._aliases(name).get(alias)
        if current is None:
            raise RegistryError(f"{name} has no {alias!r} alias, so there is nothing to roll back")
        moves = [m for m in self.history(name) if m.alias == alias and m.version == current]
        if not moves or moves[-1].previous is None:
            raise RegistryError(f"{name}@{alias} (version {current}) has no earlier {alias} to go back to; promote "
                                f"a version instead: thrifty registry promote {name} VERSION")
        previous_version = moves[-1].previous
        self.get(name, previous_version)  # still there?
        return self._move(name, alias, current, previous_version, by or decided_by(),
                          reason or f"rollback from version {current}", {"rollback": True})

    def _move(self, name: str, alias: str, previous: Optional[int], version: int, by: str, reason: str,
              extra: dict[str, Any]) -> Move:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        move = Move(f"{MOVE_PREFIX}{stamp}-{secrets.token_hex(2)}", alias, previous, version, by, reason[:1000],
                    _utc_now(), "pending", extra)
        self._call("recording the move", self.client.set_registered_model_tag, name, move.key, move.to_json())
        self._call(f"moving {alias}", self.client.set_registered_model_alias, name, alias, str(version))
        move.state = "done"
        self._call("recording the move", self.client.set_registered_model_tag, name, move.key, move.to_json())
        return move

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._call(f"tagging {name} version {version}", self.client.set_model_version_tag, name, str(version), key,
                       str(value))

    # ---- files
    def local_model(self, version: Version, cache: Optional[Path] = None) -> Path:
        """A local model folder for VERSION: the artifact folder itself on a local store, else a checked download."""
        parsed = urlparse(version.source)
        if parsed.scheme in ("file", "") and Path(unquote(parsed.path)).is_dir():
            return Path(unquote(parsed.path))
        from thrifty.models.loading import cache_dir

        root = cache or cache_dir() / "registry"
        target = root / re.sub(r"[^A-Za-z0-9._-]", "_", self.uri)[-80:] / version.name / str(version.version)
        if (target / "model").is_dir():
            return target / "model"
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            from mlflow.artifacts import download_artifacts

            self._call(f"downloading {version.uri}", download_artifacts, artifact_uri=version.source,
                       dst_path=str(scratch), tracking_uri=self.uri)
            downloaded = scratch / "model"
            expected = version.tags.get("thrifty.weights_sha256")
            if expected and weights_sha256(downloaded) != expected:
                raise RegistryError(f"the files of {version.uri} do not match its weights hash; the store's copy is "
                                    "damaged: register the run again")
            scratch.rename(target)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        return target / "model"


def _parent_version(versions: list[Version], manifest: dict[str, Any]) -> Optional[int]:
    """The registered version whose weights the run was warm-started from, if any."""
    parent = manifest.get("parent") or {}
    digest = parent.get("weights_sha256") if isinstance(parent, dict) else None
    if not digest:
        return None
    for version in versions:
        if version.tags.get("thrifty.weights_sha256") == digest:
            return version.version
    return None


def _short(labels: list[Any], shown: int = 6) -> str:
    text = ", ".join(str(label) for label in labels[:shown])
    return f"[{text}{', ...' if len(labels) > shown else ''}] ({len(labels)})"


def _describe(manifest: dict[str, Any]) -> str:
    data = manifest.get("data") or {}
    validation = (manifest.get("metrics") or {}).get("validation") or {}
    figure = ", ".join(f"{k} {v:.4f}" for k, v in validation.items() if isinstance(v, float) and k != "loss")
    return (f"{manifest['task']} model ({manifest.get('strategy')}) from {_base_name(manifest)}"
            f", {data.get('train_examples') or 0} training examples" + (f"; validation {figure}" if figure else ""))
