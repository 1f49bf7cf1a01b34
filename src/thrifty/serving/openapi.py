"""The server's OpenAPI document, written to say exactly what the server accepts and answers, and the API docs
(/docs: Swagger UI, /redoc: ReDoc) served from thrifty itself, so they work without internet.

FastAPI derives the document from the routes; `complete` then puts in what the routes check by hand (app.py) and a
derived document cannot know: exactly one of `text`/`texts` (of `prompt`/`prompts`/`messages`), no empty or blank
text, the serving limits (texts per request, characters per text, max_new_tokens), the model's labels for feedback,
the endpoints of the model's task, every error status with its `{"error", "field"}` body, text/plain for /metrics,
and the API key when one is set. A test runs schemathesis against a live server with this document: every request
the document allows must be answered 2xx (or a status that no request can avoid: 404 for an unknown prediction id,
409 with the log off, 503 while loading), every request it forbids must be refused with a 4xx, and every answer must
match the document.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Optional

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from thrifty.config import ServeConfig
from thrifty.traits import task_traits

# A character that is not whitespace (str.isspace() False; str.strip() keeps it): a text needs one. Spelled out rather
# than \S, which Python, ECMA-262 (JSON Schema) and Rust regexes read differently (\x1c-\x1f, \x85, \ufeff).
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# Sampling divides the logits by the temperature: near 1e-37 they overflow (NaN probabilities, a failed call); this
# leaves a wide margin, and below it sampling is greedy anyway. 0 is greedy.
MIN_TEMPERATURE = 1e-6
DOCS_STATIC = "/docs/static"  # Swagger UI's and ReDoc's files, from the fastapi-offline package

ERROR_WHEN = {
    400: "a body that cannot be read as text (not UTF-8), or a model that does not do this (a classifier asked "
         "to write text, or the reverse)",
    401: "the API key is missing or wrong (send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')",
    404: "no logged prediction has this id",
    409: "the prediction log is off: there is nothing to attach feedback to",
    413: "more texts or characters than the serving limits allow, or a body larger than they imply",
    422: "a request the server cannot read (see the request body's schema); the error names the field",
    503: "the model is still loading (or did not load), or the prediction log's database is away",
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string", "description": "one line naming the problem and the fix"},
                        "field": {"type": "string", "description": "the request field at fault, when one is"}}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field: `null` is the same as leaving it out."""
    return {"anyOf": [schema, {"type": "null"}]}


def given(key: str) -> dict[str, Any]:
    """The subschema of an object that has `key`, not null (for "exactly one of": oneOf over these)."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def feedback_labels(labels: list[str]) -> list[Any]:
    """The labels /v1/feedback takes: each label, and the integer a label like "3" is written as."""
    def number(label: str) -> Optional[int]:
        try:
            return int(label) if str(int(label)) == label else None
        except ValueError:
            return None

    return list(labels) + [n for n in map(number, labels) if n is not None]


def request_bodies(serve: ServeConfig, labels: Optional[list[str]]) -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the request bodies, as app.py's routes check them (`labels`: None before the model loads)."""
    chars = serve.max_chars_per_text
    text = {"type": "string", "minLength": 1, "maxLength": chars, "pattern": NOT_BLANK,
            "description": f"at most {chars} characters (413 beyond), not empty or only whitespace (422)"}
    prompt = {"type": "string", "maxLength": chars, "description": f"at most {chars} characters (413 beyond)"}
    message = {"type": "object", "required": ["role", "content"], "additionalProperties": {"type": "string"},
               "properties": {"role": {"type": "string", "examples": ["user"]},
                              "content": {"type": "string", "maxLength": chars}},
               "description": "a chat message; other string keys go to the chat template as they are"}
    count = serve.max_texts_per_request
    label = {"enum": feedback_labels(labels)} if labels is not None else {"type": ["string", "integer"]}
    return {
        "PredictRequest": {
            "type": "object", "additionalProperties": False, "oneOf": [given("texts"), given("text")],
            "description": "exactly one of `texts` and `text`",
            "properties": {
                "texts": nullable({"type": "array", "items": text, "minItems": 1, "maxItems": count,
                                   "description": f"1 to {count} texts (413 beyond)"}),
                "text": nullable(text)}},
        "GenerateRequest": {
            "type": "object", "additionalProperties": False,
            "oneOf": [given("prompt"), given("prompts"), given("messages")],
            "description": "exactly one of `prompt`, `prompts` and `messages`; the settings default to the "
                           "model's own (its manifest's generate: section)",
            "properties": {
                "prompt": nullable(prompt),
                "prompts": nullable({"type": "array", "items": prompt, "minItems": 1, "maxItems": count,
                                     "description": f"1 to {count} prompts, written together (413 beyond)"}),
                "messages": nullable({"type": "array", "items": message, "minItems": 1,
                                      "description": f"one conversation, through the model's chat template; its "
                                                     f"contents together at most {chars} characters (413 beyond)"}),
                "max_new_tokens": nullable({"type": "integer", "minimum": 1, "maximum": serve.max_new_tokens}),
                "temperature": nullable({"type": "number", "anyOf": [{"const": 0}, {"minimum": MIN_TEMPERATURE}],
                                         "description": f"0: greedy; sampling from {MIN_TEMPERATURE:g} up"}),
                "top_p": nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
                "stop": nullable({"type": "array", "items": {"type": "string"},
                                  "description": "the answer ends before the first of these strings"})}},
        "FeedbackRequest": {
            "type": "object", "additionalProperties": False, "required": ["id", "label"],
            "properties": {"id": {"type": "string", "description": "a prediction's id, from /v1/predict"},
                           "label": {**label, "description": "the true label: one of the model's labels"}}},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


MODEL = {"type": "object", "required": ["name", "version"], "properties": {
    "name": {"type": "string"}, "version": {"type": "string"}, "backend": {"type": "string"}}}
ANSWERS: dict[tuple[str, str], dict[str, Any]] = {  # (method, path): the 2xx answer, and the error statuses
    ("post", "/v1/predict"): {"200": _answer("one prediction per text, in input order", {
        "type": "object", "required": ["model", "predictions"], "properties": {
            "model": MODEL, "predictions": {"type": "array", "items": {
                "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}},
                "description": "classification: id, label, score, probabilities; token classification: id, "
                               "text, entities"}}}}),
        "errors": [400, 413, 422, 503]},
    ("post", "/v1/generate"): {"200": _answer("the text written for each prompt, in order", {
        "type": "object", "required": ["model", "generations", "latency_ms"], "properties": {
            "model": MODEL, "latency_ms": {"type": "number"}, "generations": {"type": "array", "items": {
                "type": "object", "required": ["id", "text"],
                "properties": {"id": {"type": "string"}, "text": {"type": "string"}}}}}}),
        "errors": [400, 413, 422, 503]},
    ("post", "/v1/feedback"): {"200": _answer("the label is attached to the logged prediction", {
        "type": "object", "required": ["id", "label"],
        "properties": {"id": {"type": "string"}, "label": {"type": "string"}}}),
        "errors": [400, 404, 409, 413, 422, 503]},
    ("get", "/v1/model"): {"200": _answer("the served model, its manifest and the serving limits", {
        "type": "object", "required": ["name", "version", "backend", "backend_reason", "task", "labels", "limits",
                                       "manifest"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "backend": {"type": "string"},
                       "backend_reason": {"type": "string"},
                       "task": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
                       "limits": {"type": "object"}, "manifest": {"type": "object"},
                       "registry": {"type": "object"}}}),
        "errors": [503]},
    ("get", "/healthz"): {"200": _answer("the process is up", {
        "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}), "errors": []},
    ("get", "/readyz"): {"200": _answer("the model is loaded and warmed up", {
        "type": "object", "required": ["ready"], "properties": {"ready": {"const": True}}}),
        "503": _answer("the model is still loading, or did not load (`error` says why)", {
            "type": "object", "required": ["ready"],
            "properties": {"ready": {"const": False}, "error": {"type": "string"}}}), "errors": []},
    ("get", "/metrics"): {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}, "errors": []},
}


def served_paths(task: Optional[str]) -> set[str]:
    """The /v1 endpoints of a model's task (None: not loaded yet, all of them)."""
    if task is None:
        return {"/v1/predict", "/v1/generate", "/v1/feedback"}
    traits = task_traits(task)
    if traits.writes_text:
        return {"/v1/generate"}
    return {"/v1/predict", "/v1/feedback"} if traits.predicts_labels else {"/v1/predict"}


def complete(document: dict[str, Any], serve: ServeConfig, task: Optional[str], labels: Optional[list[str]],
             protected: Iterable[str], api_key: bool) -> dict[str, Any]:
    """FastAPI's document of the app, made exact for this server: its model's task and labels (None: not loaded yet),
    its limits, the paths that need the API key (`protected`) when one is set (`api_key`)."""
    document = copy.deepcopy(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # FastAPI's {"detail": [...]} errors are not what this server answers; Message is written into GenerateRequest
    for name in ("HTTPValidationError", "ValidationError", "Message"):
        schemas.pop(name, None)
    schemas.update(request_bodies(serve, labels))
    schemas["Error"] = ERROR
    offered = served_paths(task)
    for path in [p for p in document["paths"] if p.startswith("/v1/") and p != "/v1/model" and p not in offered]:
        del document["paths"][path]  # e.g. /v1/generate of a classifier: it answers only 400
    if api_key:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                         "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = ANSWERS.get((method, path))
            if answers is None:
                continue
            errors = list(answers["errors"]) + ([401] if api_key and path in protected else [])
            operation["responses"] = {
                **{status: answer for status, answer in answers.items() if status != "errors"},
                **{str(status): {"description": ERROR_WHEN[status], "content": _json(ERROR_REF)}
                   for status in sorted(errors)}}
            if api_key and path in protected:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


def static_folder() -> Path:
    """Swagger UI's bundle and CSS, ReDoc's bundle and a favicon, as the fastapi-offline package ships them."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_docs(app: FastAPI) -> None:
    """GET /docs (Swagger UI) and /redoc (ReDoc) with their files from this server, not a CDN: they work offline.
    Like /openapi.json, they need no API key (the key is asked by Swagger UI's Authorize button)."""
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_STATIC, StaticFiles(directory=static_folder()), name="docs-static")

    def here(request: Request, path: str) -> str:
        return request.scope.get("root_path", "").rstrip("/") + path  # behind a proxy's prefix (--root-path)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=here(request, app.openapi_url), title=f"{app.title} - Swagger UI",
                                   swagger_js_url=here(request, f"{DOCS_STATIC}/swagger-ui-bundle.js"),
                                   swagger_css_url=here(request, f"{DOCS_STATIC}/swagger-ui.css"),
                                   swagger_favicon_url=here(request, f"{DOCS_STATIC}/favicon.png"),
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=here(request, app.openapi_url), title=f"{app.title} - ReDoc",
                              redoc_js_url=here(request, f"{DOCS_STATIC}/redoc.standalone.js"),
                              redoc_favicon_url=here(request, f"{DOCS_STATIC}/favicon.png"), with_google_fonts=False)
