"""The contract of `thrifty serve` against a live server process on 127.0.0.1: the API docs work offline (their files
come from the server; headless Chromium renders them with every other host closed), every error has the server's
{"error"} shape (unknown paths and methods too), blank texts are refused naming the text, and schemathesis finds no
request or answer that disagrees with the OpenAPI document."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin, urlsplit

import pytest

from thrifty.serving.openapi import NOT_BLANK, feedback_labels

from tests.serving.server_helpers import call, serve_process

LIMITS = ("--serve.max_texts_per_request", "8", "--serve.max_chars_per_text", "500")


@pytest.fixture(scope="module")
def classifier(tiny_run, tmp_path_factory):
    """A classifier served with its prediction log (so feedback answers), small limits."""
    db = tmp_path_factory.mktemp("openapi-log") / "predictions.db"
    with serve_process(tiny_run, *LIMITS, "--db", str(db)) as base:
        yield base


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


def test_not_blank_is_exactly_what_strip_keeps():
    """The document's pattern (a character that is not whitespace) and the server's check (str.strip) agree on every
    code point, in a spelling that Python, ECMA-262 and Rust regexes read alike."""
    pattern = re.compile(NOT_BLANK)
    disagree = [hex(c) for c in range(0x110000) if bool(pattern.fullmatch(chr(c))) != bool(chr(c).strip())]
    assert disagree == []


def test_feedback_takes_each_label_and_the_integer_it_spells():
    assert feedback_labels(["neg", "pos"]) == ["neg", "pos"]
    assert feedback_labels(["0", "1", "07", "-2", " 3", "1_0", "--1"]) == ["0", "1", "07", "-2", " 3", "1_0", "--1",
                                                                            0, 1, -2]


def test_docs_and_their_files_come_from_this_server(classifier):
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")),
                         ("/redoc", ("redoc.standalone.js", "favicon.png"))):
        status, kind, html = fetch(classifier + page)
        assert status == 200 and kind.startswith("text/html")
        urls = re.findall(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""", html.decode())
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "http://" not in html.decode() and "https://" not in html.decode()
        referenced = {u.rsplit("/", 1)[-1]: u for u in urls}
        for asset in assets:
            status, kind, body = fetch(urljoin(classifier, referenced[asset]))
            expected = {"js": "javascript", "css": "text/css", "png": "image/png"}[asset.rsplit(".", 1)[1]]
            assert status == 200 and expected in kind and len(body) > 1000, (asset, kind)
    status, answer = call(classifier, "GET", "/docs/static/nothing.js")
    assert status == 404 and "nothing at /docs/static/nothing.js" in answer["error"]


def test_swagger_ui_renders_the_operations_offline_in_chromium(classifier):
    """Debian's Chromium loads /docs with every host but 127.0.0.1 closed: Swagger UI draws each operation."""
    from playwright.sync_api import sync_playwright

    from tests.monitoring.browser import CHROMIUM_FLAGS, chromium

    outside, errors = [], []

    def only_this_server(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_this_server)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(classifier + "/docs")
            page.wait_for_selector(".opblock", timeout=60_000)
            operations = page.eval_on_selector_all(
                ".opblock", "blocks => blocks.map(b => b.querySelector('.opblock-summary-method').textContent + ' ' "
                            "+ b.querySelector('.opblock-summary-path').getAttribute('data-path'))")
            title = page.inner_text(".info .title")
        finally:
            browser.close()
    assert outside == [] and errors == []
    assert "thrifty" in title
    assert {"POST /v1/predict", "POST /v1/feedback", "GET /v1/model", "GET /metrics"} <= set(operations), operations
    assert "POST /v1/generate" not in operations  # a classifier's document has only what it serves


@pytest.mark.parametrize("method, path, status, fragment", [
    ("GET", "/nothing/here", 404, "nothing at /nothing/here"),
    ("POST", "/v2/predict", 404, "/docs"),
    ("DELETE", "/v1/predict", 405, "DELETE is not allowed on /v1/predict: use POST"),
    ("GET", "/v1/feedback", 405, "use POST"),
    ("POST", "/healthz", 405, "use GET"),
])
def test_unknown_paths_and_methods_answer_the_error_shape(classifier, method, path, status, fragment):
    request = urllib.request.Request(classifier + path, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    body = json.loads(refused.value.read())
    assert refused.value.code == status and refused.value.headers["content-type"] == "application/json"
    assert set(body) == {"error"} and fragment in body["error"], body
    if status == 405:
        assert refused.value.headers["allow"]


def test_a_body_that_is_not_utf8_answers_the_error_shape(classifier):
    status, answer = call(classifier, "POST", "/v1/predict", raw=b'{"texts": ["\xff\xfe"]}')
    assert status == 400 and "send a JSON object, UTF-8" in answer["error"], answer


@pytest.mark.parametrize("body, fragment, field", [
    ({"texts": ["fine", ""]}, "texts[1] is empty", "texts.1"),
    ({"texts": ["   ", "fine"]}, "texts[0] is only whitespace", "texts.0"),
    ({"texts": ["a", "b", "\t\n\u3000"]}, "texts[2] is only whitespace", "texts.2"),
    ({"text": ""}, "text is empty", "text"),
    ({"text": " \u00a0"}, "text is only whitespace", "text"),
    ({"texts": ["ok", "\ud800"]}, "texts[1] is not valid Unicode", "texts.1"),
])
def test_empty_blank_or_broken_texts_are_refused_naming_the_text(classifier, body, fragment, field):
    status, answer = call(classifier, "POST", "/v1/predict", body)
    assert status == 422 and fragment in answer["error"] and answer["field"] == field, answer
    assert set(answer) == {"error", "field"} and "\n" not in answer["error"]
    assert call(classifier, "POST", "/v1/predict", {"texts": ["a text with words"]})[0] == 200


def test_the_document_says_what_this_server_takes(classifier):
    status, document = call(classifier, "GET", "/openapi.json")
    assert status == 200
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert "/v1/generate" not in paths and {"/v1/predict", "/v1/feedback", "/metrics"} <= set(paths)
    assert schemas["FeedbackRequest"]["properties"]["label"]["enum"] == ["neg", "pos"]
    texts = schemas["PredictRequest"]["properties"]["texts"]["anyOf"][0]
    assert (texts["minItems"], texts["maxItems"], texts["items"]["maxLength"]) == (1, 8, 500)
    assert len(schemas["PredictRequest"]["oneOf"]) == 2
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    errors = paths["/v1/predict"]["post"]["responses"]
    assert {"413", "422", "503"} <= set(errors) and "401" not in errors  # no API key: no 401
    assert errors["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in schemas and "security" not in paths["/v1/predict"]["post"]


def run_schemathesis(base: str, folder, max_examples: int = 30) -> subprocess.CompletedProcess:
    """Schemathesis, every check, over the live document: deterministic, `max_examples` cases per operation, one
    worker, requests to `base` (127.0.0.1) only. 413 is how this server refuses a request over its limits."""
    config = folder / "schemathesis.toml"
    config.write_text('[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405", '
                      '"406", "409", "413", "415", "422", "428", "429", "5XX"]\n')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # nothing goes through a proxy
    return subprocess.run([sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
                           f"{base}/openapi.json", "--checks", "all", "--max-examples", str(max_examples),
                           "--generation-deterministic", "--workers", "1", "--request-timeout", "60",
                           "--output-sanitize", "false", "--report", "junit",
                           "--report-junit-path", str(folder / "junit.xml")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def assert_no_failures(result: subprocess.CompletedProcess, folder) -> None:
    report = (folder / "junit.xml").read_text()
    assert result.returncode == 0 and "<failure" not in report and "<error" not in report, result.stdout[-6000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]


def test_schemathesis_finds_nothing_the_document_does_not_allow(classifier, tmp_path):
    started = time.perf_counter()
    result = run_schemathesis(classifier, tmp_path)
    assert_no_failures(result, tmp_path)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested and int(tested.group(1)) == 6, result.stdout[-3000:]  # predict, feedback, model, 3 probes
    assert time.perf_counter() - started < 300


@pytest.mark.slow  # about 20 s beside the SFT run it needs (shared with test_generate.py)
def test_schemathesis_finds_nothing_for_a_model_that_writes_text(sft_run, tmp_path):
    with serve_process(sft_run, "--no-log", "--serve.max_texts_per_request", "4", "--serve.max_chars_per_text", "200",
                       "--serve.max_new_tokens", "8") as base:
        status, document = call(base, "GET", "/openapi.json")
        assert "/v1/generate" in document["paths"] and "/v1/predict" not in document["paths"]
        result = run_schemathesis(base, tmp_path)
    assert_no_failures(result, tmp_path)
