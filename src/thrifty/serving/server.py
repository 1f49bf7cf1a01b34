"""`thrifty serve` and `thrifty migrate`: check everything a user can get wrong, then hand the app to uvicorn.

Before a port is opened: the model folder is a finished classifier (or the registry answers and the models:/ URI
names a version whose files are there), the port is free, the prediction log's
database answers and is migrated to this thrifty's schema. Each failure is one line naming the fix (exit 2),
instead of a server that starts and then fails every request. With `--workers N`, uvicorn starts N processes that
each load the model (the settings travel in an environment variable); the database is migrated once, here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

from thrifty.databases import shown_url  # noqa: F401  (re-exported)
from thrifty.config import ServeConfig
from thrifty.inference.lanes import check_lanes
from thrifty.traits import task_traits
from thrifty.errors import ConfigError, ModelError
from thrifty.serving.app import SETTINGS_ENV, AppSettings, create_app, model_identity
from thrifty.serving.predlog import database_url, make_engine, migrate


def default_log_path(folder: Path) -> Path:
    """SQLite beside the model: RUN_DIR/serve/predictions.db for a run's model, MODEL_DIR/serve/... otherwise."""
    base = folder.parent if folder.name == "model" and (folder.parent / "run.json").exists() else folder
    return base / "serve" / "predictions.db"


def prepare_database(url: str) -> str:
    """Connect and bring the schema up to date; a clear error when the database is not there. Returns the revision."""
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(url)
    try:
        return migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open the prediction log at {shown_url(url)}: {first}; start the database, fix "
                          "--db, or serve without a log (--no-log)") from None
    finally:
        engine.dispose()


def check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pass --port with a free port, or "
                              "stop what uses this one") from None


def registry_log_path(registry_uri: str, name: str) -> Path:
    """SQLite for a registry model: beside a local store (runs/serve/NAME/predictions.db for the default), else in
    ./runs/serve/NAME/: one log across the versions the alias moves through (each row names its version)."""
    base = Path(registry_uri[len("sqlite:///"):]).parent if registry_uri.startswith("sqlite:///") else Path("runs")
    return base / "serve" / name / "predictions.db"


def serve(model_dir: str, settings: ServeConfig, *, db: Optional[str] = None, log: bool = True,
          name: Optional[str] = None, api_key: Optional[str] = None, registry: Optional[str] = None) -> None:
    """`model_dir`: a finished run or model folder, or models:/NAME@ALIAS (followed: hot swaps) or models:/NAME/VERSION
    from the registry at `registry` (registry.store.registry_uri's default when None)."""
    if model_dir.startswith("models:/"):
        from thrifty.registry.store import Registry

        store = Registry(registry)  # one line, exit 2, when the store is away or the name, alias or version is wrong
        registered = store.version_for_uri(model_dir)
        folder, manifest, _, _ = model_identity(store.local_model(registered))
        name, version, registry = name or registered.name, str(registered.version), store.uri
        default_log = registry_log_path(store.uri, registered.name)
    else:
        folder, manifest, name, version = model_identity(model_dir, name)
        default_log = default_log_path(folder)
    traits = task_traits(manifest["task"])
    if not traits.serves:
        raise ModelError(f"{folder} is a masked language model adapted by thrifty adapt: it has no labels to serve "
                         f"and writes no text; train a classifier from it with --model.name {folder}")
    if traits.writes_text and settings.backend not in ("auto", "torch"):
        raise ModelError(f"serve.backend={settings.backend}: a model that writes text ({manifest['task']}) is served by "
                         "PyTorch; drop --backend")
    if settings.lanes is not None:  # as Predictor.load will check it, but before a port opens
        check_lanes(settings.lanes, manifest["task"], folder, "serve.lanes")
    if settings.backend.startswith("onnx"):  # the graph must exist before a port opens
        from thrifty.inference.onnx_backend import graph_path

        graph_path(folder, "int8" if settings.backend == "onnx-int8" else None)
    if settings.backend == "torch-bf16":  # refused before a port opens too
        from thrifty.inference.predictor import prediction_device, require_bf16

        require_bf16(prediction_device())
    check_port(settings.host, settings.port)
    db_url = None
    if log and settings.log_predictions:
        db_url = database_url(db or settings.db or str(default_log))
        revision = prepare_database(db_url)
    if api_key:
        os.environ[settings.api_key_env] = api_key  # workers inherit it; the key itself is never printed
    app_settings = AppSettings(model_dir if model_dir.startswith("models:/") else str(folder), settings, db_url, name,
                               run_migrations=False, registry_uri=registry)

    labels = manifest.get("labels") or []
    batching = (f"up to {settings.max_batch_texts} texts or {settings.max_wait_ms:g} ms" if settings.batching
                else "off (one forward pass per request)")
    what = "writes text: POST /v1/generate" if traits.writes_text else f"{len(labels)} labels"
    print(f"thrifty serve: {name} (version {version}, {manifest['task']}, {what}) on "
          f"http://{settings.host}:{settings.port}  (API docs: /docs)")
    if app_settings.follows_alias:
        print(f"  following {model_dir} in {registry}: checked every {settings.registry_poll_seconds:g} s; a new "
              "version is loaded beside this one and swapped in without dropping requests")
    print(f"  batching: {batching}; workers: {settings.workers}; API key: "
          f"{'required' if os.environ.get(settings.api_key_env) else 'none'}")
    print(f"  prediction log: {shown_url(db_url) + f' (schema {revision})' if db_url else 'off'}; "
          f"texts stored: {settings.log_text if db_url else '-'}")

    import logging
    import signal

    import uvicorn

    # the server's own lines (ready, swaps, a refused version) in the terminal, in uvicorn's style
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    served = logging.getLogger("thrifty.serve")
    served.addHandler(handler)
    served.setLevel(logging.INFO)

    # uvicorn stops gracefully on SIGTERM/SIGINT and then raises the signal again for the previous handler; these
    # make that a normal exit (code 0), not a death by signal, once the requests in flight and the log are done.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    common = dict(host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30)
    if settings.workers == 1:
        uvicorn.run(create_app(app_settings), **common)
    else:
        os.environ[SETTINGS_ENV] = app_settings.to_env()
        uvicorn.run("thrifty.serving.app:app_from_environment", factory=True, workers=settings.workers, **common)


def migrate_command(db: str) -> str:
    """`thrifty migrate --db URL`: create or upgrade the prediction log's schema; returns the revision."""
    return prepare_database(database_url(db))
