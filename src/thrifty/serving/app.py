"""The prediction server: a FastAPI application around one model folder (`thrifty serve MODEL_DIR`), or around
whatever a registry alias points to (`thrifty serve models:/NAME@champion`).

    POST /v1/predict   {"texts": [...]} or {"text": "..."} -> {"model": {...}, "predictions": [...]}, in input order
    POST /v1/feedback  {"id": ..., "label": ...}           -> the true label, attached to a logged prediction
    GET  /v1/model     the manifest, name, version, backend and serving limits
    GET  /healthz      the process is up;  GET /readyz: the model is loaded and warmed up (503 until then)
    GET  /metrics      Prometheus;         GET /docs, /redoc: the OpenAPI document (/openapi.json), offline

The model loads in the background after start, so an orchestrator sees a live process (healthz) that is not yet
ready (readyz). Predictions go through the dynamic batcher (batching.py), one model thread off the event loop;
each answered prediction is handed to the prediction log (predlog.py), which never blocks the answer. Errors are
JSON `{"error": "one line naming the problem and the fix"}` with a fitting status: 401, 404, 405, 413, 422, 503,
unknown paths and methods included. The OpenAPI document says exactly what each endpoint accepts (openapi.py).

Following an alias (hot swap): every `serve.registry_poll_seconds` the server asks the registry where the alias
points. When it moves, the new version is downloaded, loaded and warmed up in the background while the old one keeps
answering; then `ServerState.model` is replaced in one assignment. Each batch reads the model once when it starts,
so a batch (and every request in it) runs on one model and is answered with that model's name and version;
batches already running finish on the old model, whose threads are released after. A version that fails to load,
or has another task or other labels than the one serving, is not swapped in: the old model keeps serving and the
failure is logged and counted (thrifty_model_swaps_total{result="failed"}).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from thrifty.config import ServeConfig
from thrifty.traits import task_traits
from thrifty.errors import ThriftyError
from thrifty.runs.manifest import model_folder, read_manifest, weights_sha256
from thrifty.serving.batching import DynamicBatcher, GenerationBatcher
from thrifty.serving.metrics import ServerMetrics
from thrifty.serving.openapi import MIN_TEMPERATURE, add_docs, complete
from thrifty.serving.predlog import PredictionLog, now_utc
from thrifty.version import __version__

logger = logging.getLogger("thrifty.serve")
SETTINGS_ENV = "THRIFTY_SERVE_APP"  # how `--workers N` hands the settings to each worker process
# Warm-up: one short and one long text, so the first real request meets no first-call costs.
WARMUP_TEXTS = ["warm up", " ".join(["warm up the model with a long text"] * 80)]


def _whole(value: Any) -> Any:
    """4.0 is the integer 4 in JSON (and JSON Schema); 4.5, "4" and true are not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole)]


# The request bodies' types; what else a route checks (exactly one of, limits, no blank text) is in its code, and
# openapi.py writes all of it into the OpenAPI document.
class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: Optional[list[StrictStr]] = None
    text: Optional[StrictStr] = None


class Message(BaseModel):
    """One message of a conversation: role and content, and other string keys for the chat template."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, StrictStr] = Field(init=False)
    role: StrictStr
    content: StrictStr


class GenerateRequest(BaseModel):
    """POST /v1/generate: one prompt, several, or a conversation; the settings default to the model's generate:."""

    model_config = ConfigDict(extra="forbid")
    prompt: Optional[StrictStr] = None
    prompts: Optional[list[StrictStr]] = None
    messages: Optional[list[Message]] = None
    max_new_tokens: Optional[WholeNumber] = None
    temperature: Optional[StrictFloat] = Field(None, allow_inf_nan=False)
    top_p: Optional[StrictFloat] = Field(None, allow_inf_nan=False)
    stop: Optional[list[StrictStr]] = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StrictStr
    label: Union[StrictStr, WholeNumber]


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def model_identity(path: str | Path, name: Optional[str] = None) -> tuple[Path, dict[str, Any], str, str]:
    """The model folder, its manifest, a name (the run folder's name unless given) and a version (weights hash)."""
    folder = model_folder(path)
    manifest = read_manifest(folder)
    if name is None:
        name = folder.parent.name if folder.name == "model" and (folder.parent / "run.json").exists() else folder.name
    version = (weights_sha256(folder) or "unversioned")[:12]
    return folder, manifest, name, version


@dataclass
class AppSettings:
    """What a server process needs: the model folder and the serve section (plus what the CLI decided)."""

    model_dir: str
    serve: ServeConfig
    db_url: Optional[str] = None  # None: no prediction log
    name: Optional[str] = None
    run_migrations: bool = True  # the CLI migrates once before starting workers; tests let the app do it
    registry_uri: Optional[str] = None  # the store a models:/ model_dir is read from (None: registry.store's default)

    @property
    def model_uri(self) -> Optional[str]:
        """models:/NAME@ALIAS or models:/NAME/VERSION when the model comes from the registry."""
        return self.model_dir if self.model_dir.startswith("models:/") else None

    @property
    def follows_alias(self) -> bool:
        """models:/NAME@ALIAS: the server follows the alias (hot swaps); models:/NAME/VERSION stays put."""
        return "@" in (self.model_uri or "")

    def to_env(self) -> str:
        return json.dumps({"model_dir": self.model_dir, "serve": asdict(self.serve), "db_url": self.db_url,
                           "name": self.name, "run_migrations": False, "registry_uri": self.registry_uri})

    @classmethod
    def from_env(cls) -> "AppSettings":
        raw = json.loads(os.environ[SETTINGS_ENV])
        return cls(raw["model_dir"], ServeConfig(**raw["serve"]), raw["db_url"], raw["name"], raw["run_migrations"],
                   raw.get("registry_uri"))


class ServedModel:
    """A loaded Predictor and who it is: for a registry version, its registered name and version number."""

    def __init__(self, settings: AppSettings, registered=None, folder: Optional[Path] = None) -> None:
        """`registered`: a registry.store.Version whose files are in `folder`; else settings.model_dir is the folder."""
        import torch

        from thrifty.inference.predictor import Predictor

        serve = settings.serve
        threads = serve.threads or max(1, (os.cpu_count() or 1) // serve.workers)
        torch.set_num_threads(threads)
        self.registered = registered
        if registered is None:
            self.folder, self.manifest, self.name, self.version = model_identity(settings.model_dir, settings.name)
        else:
            self.folder, self.manifest, _, _ = model_identity(folder)
            self.name, self.version = settings.name or registered.name, str(registered.version)
        self.predictor, self.generator = None, None
        if task_traits(self.manifest["task"]).writes_text:  # a model that writes text: POST /v1/generate
            from thrifty.inference.generation import Generator

            self.generator = Generator.load(self.folder)
            self.task, self.labels = self.manifest["task"], []
        else:
            self.predictor = Predictor.load(self.folder, backend=serve.backend, lanes=serve.lanes, threads=threads)
            self.task = self.predictor.task
            self.labels = list(self.predictor.label_names)
        self.backend = self.predictor.backend if self.predictor is not None else "torch"
        self.backend_reason = self.predictor.backend_reason if self.predictor is not None else "a model that writes text"
        self.forward_batch_size = serve.forward_batch_size

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.predictor.predict(texts, batch_size=self.forward_batch_size)

    def close(self) -> None:
        """Release the lanes' threads once what is queued on them is done (after a swap)."""
        if self.predictor is not None:
            self.predictor.close()

    def registry_info(self, uri: Optional[str], store: Optional[str]) -> Optional[dict[str, Any]]:
        if self.registered is None:
            return None
        return {"uri": uri, "store": store, "name": self.registered.name, "version": self.registered.version,
                "aliases": self.registered.aliases, "weights_sha256": self.registered.tags.get("thrifty.weights_sha256")}


def load_served_model(settings: AppSettings, registry=None, registered=None) -> ServedModel:
    """Load (and for the registry, resolve and fetch) a model, then warm it up: all of it off the event loop."""
    if settings.model_uri is None:
        model = ServedModel(settings)
    else:
        if registered is None:
            registered = registry.version_for_uri(settings.model_uri)
        model = ServedModel(settings, registered, registry.local_model(registered))
    if model.generator is not None:
        model.generator.generate(["warm up"], max_new_tokens=2)
    else:
        model.predict(WARMUP_TEXTS)
    return model


class ServerState:
    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.serve = settings.serve
        self.model: Optional[ServedModel] = None
        self.batcher: Optional[DynamicBatcher] = None
        self.load_error: Optional[str] = None
        self.log: Optional[PredictionLog] = None
        if settings.db_url is not None and self.serve.log_predictions:
            self.log = PredictionLog(settings.db_url, buffer_rows=self.serve.log_buffer_rows,
                                     store_text=self.serve.log_text == "text")
        self.metrics = ServerMetrics(self.log_stats, self.fallback_stats)
        self.api_key = os.environ.get(self.serve.api_key_env) or None
        self.registry = None  # registry.store.Registry when serving models:/...
        self.swaps = 0  # models swapped in since start (following a registry alias)
        self._follower: Optional[asyncio.Task] = None
        self.refused: dict[int, str] = {}  # registry versions that failed to load or do not fit, and why

    def predict_current(self, texts: list[str]) -> list[tuple[ServedModel, dict[str, Any]]]:
        """The batcher's work: the model is read once, so a whole batch runs on one model and says which."""
        model = self.model
        assert model is not None
        return [(model, result) for result in model.predict(texts)]

    @property
    def ready(self) -> bool:
        return self.model is not None and self.batcher is not None

    def log_stats(self) -> Optional[dict[str, Any]]:
        log = self.log
        if log is None:
            return None
        return {"logged": log.logged, "unlogged": log.unlogged, "write_errors": log.write_errors,
                "buffered": log.buffered}

    def fallback_stats(self) -> Optional[dict[str, Any]]:
        model = self.model.predictor.model if self.model is not None and self.model.predictor is not None else None
        if getattr(model, "fallback", None) is None:
            return None
        return {"recomputed": model.rows_recomputed}

    async def load(self) -> None:
        """Load and warm up the model off the event loop; /readyz turns 200 when this is done."""
        loop = asyncio.get_running_loop()
        try:
            if self.settings.model_uri is not None:
                from thrifty.registry.store import Registry

                self.registry = await loop.run_in_executor(None, Registry, self.settings.registry_uri)
            model = await loop.run_in_executor(None, load_served_model, self.settings, self.registry)
            batcher = DynamicBatcher(self.predict_current, max_batch_texts=self.serve.max_batch_texts,
                                     max_wait_ms=self.serve.max_wait_ms, enabled=self.serve.batching,
                                     on_batch=self.metrics.observe_batch)
            await batcher.start()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and in the server's log, the process lives
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("thrifty serve: the model did not load: %s", self.load_error)
            return
        self._show(model)
        self.metrics.queue_texts.set_function(lambda: batcher.waiting_texts)
        self.model, self.batcher = model, batcher
        logger.info("thrifty serve: %s (version %s) ready; backend %s (%s)", model.name, model.version, model.backend,
                    model.backend_reason)
        if self.settings.follows_alias:
            self._follower = asyncio.create_task(self.follow(), name="thrifty-follow-alias")

    def _show(self, model: ServedModel) -> None:
        self.metrics.model.info({"name": model.name, "version": model.version, "backend": model.backend,
                                 "task": model.task, "thrifty_version": __version__})

    async def follow(self) -> None:
        """Poll the alias; when it points elsewhere, load that version beside the live one and swap it in."""
        from thrifty.registry.store import parse_model_uri

        loop = asyncio.get_running_loop()
        name, alias, _ = parse_model_uri(self.settings.model_uri or "")
        last_problem = None
        while True:
            await asyncio.sleep(self.serve.registry_poll_seconds)
            try:
                target = await loop.run_in_executor(None, self.registry.resolve, name, alias)
                last_problem = None
            except Exception as exc:  # noqa: BLE001 - a registry that is away: keep serving, say so once
                problem = f"{type(exc).__name__}: {exc}"
                if problem != last_problem:
                    logger.warning("thrifty serve: cannot read %s (%s); still serving version %s",
                                   self.settings.model_uri, problem, self.model.version if self.model else "-")
                last_problem = problem
                continue
            current = self.model
            if current is None or target.version == getattr(current.registered, "version", None) \
                    or target.version in self.refused:
                continue
            await self.swap_to(target)

    async def swap_to(self, target) -> bool:
        """Load `target` (a registry Version) and swap it in; False (old model kept) when it fails or does not fit."""
        loop = asyncio.get_running_loop()
        current = self.model
        started = time.perf_counter()
        try:
            model = await loop.run_in_executor(None, load_served_model, self.settings, self.registry, target)
            if current is not None and (model.task, model.labels) != (current.task, current.labels):
                model.close()
                raise ThriftyError(f"version {target.version} is a {model.task} model with labels {model.labels[:6]}, "
                                   f"not {current.task} with {current.labels[:6]} like the one serving")
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving
            self.refused[target.version] = f"{type(exc).__name__}: {exc}"
            self.metrics.swaps.labels("failed").inc()
            logger.error("thrifty serve: not swapping to %s version %s: %s; still serving version %s", target.name,
                         target.version, self.refused[target.version], current.version if current else "-")
            return False
        self.model = model  # the swap: batches that start from now on run on the new model
        self.swaps += 1
        self.metrics.swaps.labels("done").inc()
        self._show(model)
        logger.info("thrifty serve: swapped in %s version %s (was %s) in %.1f s", model.name, model.version,
                    current.version if current else "-", time.perf_counter() - started)
        if current is not None and self.batcher is not None:
            self.batcher.after_current_batch(current.close)  # a batch that started on it finishes on it
        return True

    async def stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            try:
                await self._follower
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
            self._follower = None


def _error(status: int, message: str, field: Optional[str] = None,
           headers: Optional[dict[str, str]] = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def _http_message(request: Request, exc: HTTPException) -> str:
    """One line for what routing refused (an unknown path, a method a path does not take) or another HTTP error."""
    if exc.status_code == 404:
        return f"nothing at {request.url.path}: the endpoints are listed at /docs (or /openapi.json)"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or "another method"
        return f"{request.method} is not allowed on {request.url.path}: use {allowed}"
    if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8)
        return f"{exc.detail}: send a JSON object, UTF-8, with Content-Type: application/json"
    return str(exc.detail)


def check_text(text: str, where: str, field: str, limit: Optional[int]) -> None:
    """A text to predict or a prompt (`where`: texts[1], `field`: texts.1): not longer than `limit` (413), and valid
    Unicode (422; a lone surrogate, which JSON can spell, would fail the tokenizer and the batch it is in)."""
    if limit is not None and len(text) > limit:
        raise ApiError(413, f"{where} has {len(text)} characters; the limit is serve.max_chars_per_text={limit}: "
                            "shorten it", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(422, f"{where} is not valid Unicode (a lone surrogate at character {exc.start}, "
                            f"{text[exc.start]!a}): send UTF-8 text", field) from None


def writable_stops(tokenizer: Any, stop: list[str]) -> list[str]:
    """The stop strings, or none when the tokenizer writes none of them: their last characters are in no token, so
    no answer can contain them (transformers refuses such a list instead of ignoring it)."""
    from transformers import StopStringCriteria

    def writable(text: str) -> bool:  # an answer is valid Unicode: a lone surrogate cannot be in it
        try:
            return bool(text.encode("utf-8"))
        except UnicodeEncodeError:
            return False

    stop = [s for s in stop if writable(s)]
    if not stop:
        return []
    try:
        StopStringCriteria(tokenizer, stop)  # cached by transformers: generate reuses the work
    except ValueError:
        return []
    return stop


def _validation_message(exc: RequestValidationError) -> tuple[str, Optional[str]]:
    """One line from pydantic's list of errors: the first problem, the field it is in, and what to send."""
    first = exc.errors()[0]
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return ("the request body is not valid JSON; send {\"texts\": [\"...\"]} with Content-Type: application/json",
                None)
    field = ".".join(where) or None
    if field is None:
        return "the request body is missing or not a JSON object; send {\"texts\": [\"...\"]}", None
    return f"{field}: {first.get('msg', 'invalid value')}", field


def create_app(settings: AppSettings) -> FastAPI:
    """The server of one model (or registry alias): its routes, error shape, limits, metrics and OpenAPI document."""
    state = ServerState(settings)
    app = FastAPI(title="thrifty", version=__version__, lifespan=_lifespan(state), docs_url=None, redoc_url=None,
                  description="Predictions from a model fine-tuned by thrifty, with dynamic batching and a prediction log.")
    app.state.thrifty = state
    add_docs(app)  # /docs and /redoc, their files served from here: no CDN
    if state.serve.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=state.serve.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    _add_error_shape(app, state)
    require_key = _key_check(state)
    _add_prediction_routes(app, state, require_key)
    _add_status_routes(app, state, require_key)
    protected = {route.path for route in app.routes
                 if any(d.dependency is require_key for d in getattr(route, "dependencies", []))}
    app.openapi = _openapi_of(app, state, protected)
    return app


def _lifespan(state: ServerState):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        if state.log is not None:
            await loop.run_in_executor(None, state.log.start, state.settings.run_migrations)
        loading = asyncio.create_task(state.load())
        yield
        # Shutdown (SIGTERM): uvicorn has stopped accepting and finished the requests in flight.
        await loading
        await state.stop_following()
        if state.batcher is not None:
            await state.batcher.stop()
        if state.log is not None:
            await loop.run_in_executor(None, state.log.close, state.serve.shutdown_flush_seconds)
            if state.log.unlogged:
                logger.warning("thrifty serve: %d predictions were not logged", state.log.unlogged)

    return lifespan


def _add_error_shape(app: FastAPI, state: ServerState) -> None:
    """Every error, the server's own and routing's, as {"error", "field"}; too large a body refused before it is read;
    every request counted and timed."""
    serve = state.serve
    # A request can be no longer than its limits allow: texts x characters, each character spelled the longest way
    # JSON can (12 bytes: a \uXXXX\uXXXX surrogate pair, as json.dumps writes an emoji by default).
    max_body_bytes = serve.max_texts_per_request * (serve.max_chars_per_text * 12 + 16) + 4096

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_message(exc)
        return _error(422, message, field)

    @app.exception_handler(HTTPException)  # routing's 404 and 405, and any other HTTP error: the same shape
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (204, 304):  # no body allowed
            return Response(status_code=exc.status_code, headers=exc.headers)
        return _error(exc.status_code, _http_message(request, exc), headers=exc.headers)

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            response: Response = _error(413, f"the request body has {int(length)} bytes; the limit is {max_body_bytes} "
                                             f"(serve.max_texts_per_request x serve.max_chars_per_text): send fewer "
                                             "or shorter texts per request")
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # noqa: BLE001 - never crash the server over one request
                logger.exception("thrifty serve: request failed")
                response = _error(500, f"internal error: {type(exc).__name__}: {exc}")
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "other")
        state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        state.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response


def _key_check(state: ServerState):
    """The dependency of every route that needs the API key (when one is set)."""
    async def require_key(request: Request) -> None:  # async: no thread pool hop per request
        if state.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        sent = [request.headers.get("x-api-key"), auth[7:].strip() if auth.lower().startswith("bearer ") else None]
        # either header may carry the key (the two security schemes of the OpenAPI document); constant time
        if not any(s and hmac.compare_digest(s.encode(), state.api_key.encode()) for s in sent):
            raise ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")

    return require_key


def _ready_model(state: ServerState) -> ServedModel:
    if state.model is None:
        if state.load_error:
            raise ApiError(503, f"the model did not load: {state.load_error}")
        raise ApiError(503, "the model is still loading; retry when GET /readyz answers 200")
    return state.model


def _texts_of(body: PredictRequest, serve: ServeConfig) -> list[str]:
    """The texts of a /v1/predict request, each checked against the limits."""
    if (body.texts is None) == (body.text is None):
        raise ApiError(422, "send either \"texts\": [...] or \"text\": \"...\" (exactly one of them)", "texts")
    texts = body.texts if body.texts is not None else [body.text]
    if not texts:
        raise ApiError(422, "texts is an empty list; send at least one text", "texts")
    if len(texts) > serve.max_texts_per_request:
        raise ApiError(413, f"{len(texts)} texts in one request; the limit is serve.max_texts_per_request="
                            f"{serve.max_texts_per_request}: split the request", "texts")
    for i, text in enumerate(texts):
        where, field = (f"texts[{i}]", f"texts.{i}") if body.texts is not None else ("text", "text")
        check_text(text, where, field, serve.max_chars_per_text)
        if not text.strip():
            raise ApiError(422, f"{where} is {'empty' if not text else 'only whitespace'}: there is nothing to "
                                "predict; send text, or leave it out", field)
    return texts


def _prompts_of(body: GenerateRequest, serve: ServeConfig) -> list[Any]:
    """The prompts of a /v1/generate request (a conversation is one prompt), each checked against the limits, and
    its settings checked too."""
    given = [k for k in ("prompt", "prompts", "messages") if getattr(body, k) is not None]
    if len(given) != 1:
        raise ApiError(422, "send exactly one of \"prompt\": \"...\", \"prompts\": [...] or \"messages\": "
                            "[{\"role\": \"user\", \"content\": \"...\"}]", "prompt")
    if body.messages is not None:  # one conversation: its contents together count as one prompt
        conversation = [m.model_dump() for m in body.messages]
        if not conversation:
            raise ApiError(422, "messages is an empty list; send at least one message", "messages")
        for i, message in enumerate(conversation):
            for key, value in message.items():
                check_text(value, f"messages[{i}].{key}", f"messages.{i}.{key}", None)
        size = sum(len(m["content"]) for m in conversation)
        if size > serve.max_chars_per_text:
            raise ApiError(413, f"the messages have {size} characters of content; the limit is serve."
                                f"max_chars_per_text={serve.max_chars_per_text}: shorten them", "messages")
        prompts: list[Any] = [conversation]
    else:
        prompts = body.prompts if body.prompts is not None else [body.prompt]
        if not prompts or len(prompts) > serve.max_texts_per_request:
            raise ApiError(413 if prompts else 422, f"{len(prompts)} prompts; send 1 to "
                           f"serve.max_texts_per_request={serve.max_texts_per_request}", "prompts")
        for i, prompt in enumerate(prompts):
            where, field = (f"prompts[{i}]", f"prompts.{i}") if body.prompts is not None else ("prompt", "prompt")
            check_text(prompt, where, field, serve.max_chars_per_text)
    if body.max_new_tokens is not None and not 1 <= body.max_new_tokens <= serve.max_new_tokens:
        raise ApiError(422, f"max_new_tokens={body.max_new_tokens}: give 1 to serve.max_new_tokens="
                            f"{serve.max_new_tokens}", "max_new_tokens")
    if body.temperature is not None and 0 < body.temperature < MIN_TEMPERATURE:
        raise ApiError(422, f"temperature={body.temperature:g}: give 0 (greedy) or at least {MIN_TEMPERATURE:g}",
                       "temperature")
    return prompts


def _add_prediction_routes(app: FastAPI, state: ServerState, require_key) -> None:
    """POST /v1/predict, /v1/generate and /v1/feedback."""
    serve = state.serve

    @app.post("/v1/predict", dependencies=[Depends(require_key)], response_model=None)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Predict one text (`text`) or several (`texts`): one result per text, in input order."""
        started = time.perf_counter()
        texts = _texts_of(body, serve)
        model = _ready_model(state)
        if model.generator is not None:
            raise ApiError(400, f"this model writes text (task {model.task}): POST /v1/generate with "
                                "{\"prompt\": \"...\"}")
        assert state.batcher is not None
        answered = await state.batcher.predict(texts)
        model = answered[0][0]  # the model this request's batch ran on (a swap may have happened since it arrived)
        results = [result for _, result in answered]
        created, latency_ms = now_utc(), (time.perf_counter() - started) * 1000.0
        ids = [uuid.uuid4().hex for _ in texts]
        if state.log is not None:
            state.log.record([state.log.prediction_row(prediction_id=i, created_at=created, model_name=model.name,
                                                       model_version=model.version, text=t, result=r,
                                                       latency_ms=latency_ms)
                              for i, t, r in zip(ids, texts, results)])
        return {"model": {"name": model.name, "version": model.version, "backend": model.backend},
                "predictions": [{"id": i, **r} for i, r in zip(ids, results)]}

    # one generate call at a time (it has all the threads); requests that wait meanwhile are written together
    generations = GenerationBatcher(max_prompts=serve.max_batch_texts if serve.batching else 1)  # 1: each alone

    @app.post("/v1/generate", dependencies=[Depends(require_key)], response_model=None)
    async def generate(body: GenerateRequest) -> dict[str, Any]:
        """Text written after a prompt (`prompt`), several (`prompts`, written together) or a conversation
        (`messages`, through the chat template); greedy unless `temperature` > 0."""
        prompts = _prompts_of(body, serve)
        model = _ready_model(state)
        if model.generator is None:
            raise ApiError(400, f"this model predicts labels (task {model.task}): POST /v1/predict with "
                                "{\"texts\": [...]}")
        settings = {k: getattr(body, k) for k in ("max_new_tokens", "temperature", "top_p", "stop")}
        if body.stop:
            settings["stop"] = await run_in_threadpool(writable_stops, model.generator.tokenizer, body.stop)
        started = time.perf_counter()
        try:
            written = await generations.generate(model.generator, prompts, settings)
        except ThriftyError as exc:  # a setting out of range, a chat model without a template
            raise ApiError(422, str(exc))
        return {"model": {"name": model.name, "version": model.version},
                "generations": [{"id": uuid.uuid4().hex, "text": text} for text in written],
                "latency_ms": round((time.perf_counter() - started) * 1000.0, 1)}

    @app.post("/v1/feedback", dependencies=[Depends(require_key)], response_model=None)
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Attach the true label to a logged prediction (for accuracy over time in `thrifty monitor`)."""
        model = _ready_model(state)
        if state.log is None:
            raise ApiError(409, "the prediction log is off (serve.log_predictions: false), so there is nothing to "
                                "attach feedback to; serve with the log on")
        if not task_traits(model.task).predicts_labels:
            raise ApiError(422, f"feedback takes a class label; this is a {model.task} model", "label")
        label = str(body.label)
        if label not in model.labels:
            shown = ", ".join(model.labels[:20]) + (" ..." if len(model.labels) > 20 else "")
            raise ApiError(422, f"label {label!r} is not one of the model's labels: {shown}", "label")
        try:
            found = await run_in_threadpool(state.log.attach_feedback, body.id, label)
        except SQLAlchemyError as exc:
            raise ApiError(503, f"the prediction log's database is unavailable ({type(exc).__name__}); retry later")
        if not found:
            raise ApiError(404, f"no logged prediction has id {body.id!r}; use an id returned by /v1/predict", "id")
        return {"id": body.id, "label": label}


def _add_status_routes(app: FastAPI, state: ServerState, require_key) -> None:
    """GET /v1/model, /healthz, /readyz and /metrics."""
    serve, settings = state.serve, state.settings

    @app.get("/v1/model", dependencies=[Depends(require_key)], response_model=None)
    async def model_info() -> dict[str, Any]:
        """The manifest of the served model, its name, version and backend (and why that backend), and the serving
        limits."""
        model = _ready_model(state)
        limits = {k: getattr(serve, k) for k in ("max_texts_per_request", "max_chars_per_text", "batching",
                                                 "max_batch_texts", "max_wait_ms")}
        info = {"name": model.name, "version": model.version, "backend": model.backend,
                "backend_reason": model.backend_reason, "task": model.task,
                "labels": model.labels, "limits": limits, "manifest": model.manifest}
        registry = model.registry_info(settings.model_uri, state.registry.uri if state.registry else None)
        if registry is not None:
            info["registry"] = {**registry, "swaps": state.swaps,
                                "poll_seconds": serve.registry_poll_seconds if settings.follows_alias else None,
                                "not_swapped": {str(v): why for v, why in state.refused.items()}}
        return info

    @app.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.ready:
            return JSONResponse({"ready": True})
        body = {"ready": False, "error": state.load_error} if state.load_error else {"ready": False}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", dependencies=[Depends(require_key)], response_class=PlainTextResponse)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _openapi_of(app: FastAPI, state: ServerState, protected: set[str]):
    def openapi() -> dict[str, Any]:
        """The document of this server: exact for its model once loaded (kept from then on: a swapped-in version
        has the same task and labels), generic until then."""
        if app.openapi_schema is not None:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        model = state.model
        document = complete(get_openapi(title=app.title, version=app.version, description=app.description,
                                        routes=app.routes),
                            state.serve, model.task if model else None, model.labels if model else None, protected,
                            api_key=state.api_key is not None)
        if model is not None:
            app.openapi_schema = document
        return document

    return openapi


def app_from_environment() -> FastAPI:
    """The factory each `--workers N` process calls (uvicorn imports it by name)."""
    return create_app(AppSettings.from_env())
