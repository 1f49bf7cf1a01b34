"""`thrifty serve` and `thrifty migrate`: the HTTP server and its prediction log's schema."""

from __future__ import annotations

from typing import Annotated, Optional

from thrifty.cli import vocabulary as words
from thrifty.cli.command import Arg, Context, Option, command

EPILOG_SERVE = """POST /v1/predict {"texts": [...]} -> one result per text; POST /v1/feedback {"id", "label"};
GET /v1/model, /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI).
serve settings: --serve.KEY VALUE, e.g. --serve.max_wait_ms 10 --serve.max_batch_texts 32 --serve.log_text hash
(`thrifty config` lists them all)."""
DB = "the prediction log: a SQLite path or postgresql://user:password@host/db"


@command("answer predictions over HTTP: dynamic batching, a prediction log, metrics (docs/serving.md)",
         epilog=EPILOG_SERVE, config=True)
def serve(
    model_dir: Annotated[str, Arg(words.MODEL_DIR + "; or models:/NAME@champion (follows the alias: hot swaps) or "
                                  "models:/NAME/VERSION from the registry", metavar="MODEL_DIR")],
    *,
    config: Annotated[Optional[str], Option("YAML with a serve: section (other sections are ignored)")] = None,
    registry: Annotated[Optional[str], Option(words.REGISTRY, metavar="URI")] = None,
    host: Annotated[Optional[str], Option("bind address (default 127.0.0.1: this machine only)")] = None,
    port: Annotated[Optional[int], Option("port (default 8000)")] = None,
    workers: Annotated[Optional[int], Option("server processes, each with its own copy of the model (default 1)")] = None,
    api_key: Annotated[Optional[str], Option("require this key on /v1/* and /metrics (better: set THRIFTY_API_KEY, "
                                             "which `ps` does not show)")] = None,
    db: Annotated[Optional[str], Option(DB + " (default: SQLite in RUN_DIR/serve/)")] = None,
    no_log: Annotated[bool, Option("do not log predictions")] = False,
    no_batching: Annotated[bool, Option("one forward pass (or generate call) per request")] = False,
    name: Annotated[Optional[str], Option("the model name in answers and the log (default: the run folder's "
                                          "name)")] = None,
    backend: Annotated[Optional[str], Option(words.BACKEND, choices=words.BACKEND_CHOICES)] = None,
    lanes: Annotated[Optional[int], Option(words.LANES)] = None,
    ctx: Context,
) -> int:
    from thrifty.config import load_config

    options = {"serve.host": host, "serve.port": port, "serve.workers": workers, "serve.backend": backend,
               "serve.lanes": lanes}
    settings = load_config(config, ctx.overrides + words.as_overrides(options))  # the options win
    if no_batching:
        settings.serve.batching = False
    from thrifty.serving.server import serve as run_server

    run_server(model_dir, settings.serve, db=db, log=not no_log, name=name, api_key=api_key, registry=registry)
    return 0


@command("create or upgrade a prediction log database's schema")
def migrate(*, db: Annotated[str, Option(DB, required=True)]) -> int:
    from thrifty.serving.predlog import database_url
    from thrifty.serving.server import migrate_command, shown_url

    revision = migrate_command(db)
    print(f"prediction log at {shown_url(database_url(db))}: schema at revision {revision}")
    return 0
