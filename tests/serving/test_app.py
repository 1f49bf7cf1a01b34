"""The prediction server over real HTTP on 127.0.0.1: answers, order under concurrency, limits, keys, metrics, log."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from thrifty.config import ServeConfig
from thrifty.serving.app import AppSettings

from tests.serving.server_helpers import call, running_server


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    db = tmp_path_factory.mktemp("serve-log") / "predictions.db"
    serve = ServeConfig(max_texts_per_request=8, max_chars_per_text=500, max_wait_ms=10, threads=2)
    with running_server(AppSettings(str(tiny_run), serve, f"sqlite:///{db}")) as (base, state):
        yield base, state


def test_predict_one_and_many_texts_in_input_order_with_ids_and_the_model_version(server, tiny_run):
    from thrifty.inference.predictor import Predictor

    base, state = server
    texts = ["I loved this wonderful film", "I hated this terrible film", "an ordinary sentence"]
    status, body = call(base, "POST", "/v1/predict", {"texts": texts})
    assert status == 200
    assert body["model"]["name"] == tiny_run.name and len(body["model"]["version"]) == 12
    direct = Predictor.load(tiny_run).predict(texts)  # the server answers exactly what predict answers
    for answer, expected in zip(body["predictions"], direct):
        assert answer["label"] == expected["label"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert len(answer["id"]) == 32
    assert len({a["id"] for a in body["predictions"]}) == 3
    status, one = call(base, "POST", "/v1/predict", {"text": texts[0]})
    assert status == 200 and one["predictions"][0]["label"] == direct[0]["label"]


def test_concurrent_requests_never_get_another_requests_results(server):
    base, state = server
    words = ["loved", "hated", "wonderful", "terrible", "film", "plot"]

    def ask(i):
        texts = [f"request {i} text {k} {words[(i + k) % 6]}" for k in range(1 + i % 5)]
        status, body = call(base, "POST", "/v1/predict", {"texts": texts})
        return texts, status, body

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(64)))
    single = {}
    for texts, status, body in results:
        assert status == 200
        assert len(body["predictions"]) == len(texts)
        for text in texts:
            single.setdefault(text, None)
    # the same texts asked alone give the same probabilities: nothing was mixed between requests
    for texts, _, body in results[:8]:
        status, alone = call(base, "POST", "/v1/predict", {"texts": texts})
        for a, b in zip(body["predictions"], alone["predictions"]):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    status, metrics = call(base, "GET", "/metrics")
    assert status == 200
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("thrifty_batch_texts_count"))
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("thrifty_batch_texts_sum"))
    assert total / count > 1.0  # texts of concurrent requests shared forward passes


@pytest.mark.parametrize("body, status, fragment", [
    ({"texts": []}, 422, "empty"),
    ({"texts": "not a list"}, 422, "texts"),
    ({"texts": [1, 2]}, 422, "texts.0"),
    ({}, 422, "exactly one"),
    ({"text": "a", "texts": ["b"]}, 422, "exactly one"),
    ({"texts": ["x"], "extra": 1}, 422, "extra"),
    ({"texts": ["x"] * 9}, 413, "max_texts_per_request"),
    ({"texts": ["ok", "y" * 501]}, 413, "texts[1] has 501 characters"),
])
def test_bad_requests_get_one_clear_json_error(server, body, status, fragment):
    base, _ = server
    got, answer = call(base, "POST", "/v1/predict", body)
    assert got == status, answer
    assert fragment in answer["error"] and "\n" not in answer["error"]


def test_malformed_json_and_oversized_bodies(server):
    base, _ = server
    status, answer = call(base, "POST", "/v1/predict", raw=b'{"texts": ["unterminated')
    assert status == 422 and "not valid JSON" in answer["error"]
    # the body limit: 8 texts x (500 characters x 12 bytes, a \\uXXXX\\uXXXX pair each, + 16) + 4096 = 52224 bytes
    status, answer = call(base, "POST", "/v1/predict", raw=b'{"texts": ["' + b"z" * 60000 + b'"]}')
    assert status == 413 and "the request body has 60015 bytes; the limit is 52224" in answer["error"]
    # within it: 8 texts of 500 emoji, each written by json.dumps as a 12-byte escaped surrogate pair
    status, answer = call(base, "POST", "/v1/predict", {"texts": ["\U0001F600" * 500] * 8})
    assert status == 200 and len(answer["predictions"]) == 8
    status, _ = call(base, "POST", "/v1/predict", {"texts": ["still alive"]})
    assert status == 200


def test_feedback_attaches_a_true_label_to_a_logged_prediction(server):
    base, state = server
    _, body = call(base, "POST", "/v1/predict", {"texts": ["feedback please"]})
    prediction_id = body["predictions"][0]["id"]
    assert call(base, "POST", "/v1/feedback", {"id": prediction_id, "label": "neg"}) == (200, {"id": prediction_id,
                                                                                             "label": "neg"})
    status, answer = call(base, "POST", "/v1/feedback", {"id": "0" * 32, "label": "neg"})
    assert status == 404 and "no logged prediction" in answer["error"]
    status, answer = call(base, "POST", "/v1/feedback", {"id": prediction_id, "label": "maybe"})
    assert status == 422 and "neg, pos" in answer["error"]
    with state.log.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT true_label FROM predictions WHERE id=:i"), {"i": prediction_id})
        assert stored.scalar_one() == "neg"


def test_every_answered_prediction_is_in_the_log(server):
    base, state = server
    for i in range(5):
        call(base, "POST", "/v1/predict", {"texts": [f"count me {i}", "and me"]})
    assert state.log.flush(timeout=30)
    _, metrics = call(base, "GET", "/metrics")
    predicted = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("thrifty_predictions_total"))
    warmup = 0  # the warm-up pass is not counted
    assert state.log.count() == predicted - warmup == state.log.logged
    assert "thrifty_prediction_log_unlogged_total 0.0" in metrics
    assert 'thrifty_requests_total{endpoint="/v1/predict",status="200"}' in metrics
    assert "thrifty_request_latency_seconds_bucket" in metrics and "thrifty_queue_texts" in metrics


def test_model_health_readiness_and_openapi(server, tiny_run):
    base, _ = server
    status, info = call(base, "GET", "/v1/model")
    assert status == 200 and info["labels"] == ["neg", "pos"] and info["manifest"]["task"] == "classification"
    assert info["limits"]["max_texts_per_request"] == 8
    assert call(base, "GET", "/healthz") == (200, {"status": "ok"})
    assert call(base, "GET", "/readyz") == (200, {"ready": True})
    status, spec = call(base, "GET", "/openapi.json")
    assert status == 200 and "/v1/predict" in spec["paths"] and "/v1/feedback" in spec["paths"]


def test_an_api_key_is_required_when_set(tiny_run, monkeypatch):
    monkeypatch.setenv("THRIFTY_TEST_KEY", "s3cret")
    serve = ServeConfig(api_key_env="THRIFTY_TEST_KEY", log_predictions=False, threads=2)
    with running_server(AppSettings(str(tiny_run), serve, None)) as (base, _):
        status, answer = call(base, "POST", "/v1/predict", {"texts": ["hi"]})
        assert status == 401 and "API key" in answer["error"]
        assert call(base, "POST", "/v1/predict", {"texts": ["hi"]}, headers={"X-API-Key": "wrong"})[0] == 401
        assert call(base, "POST", "/v1/predict", {"texts": ["hi"]}, headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(base, "GET", "/metrics", headers={"X-API-Key": "s3cret"})[0] == 200
        assert call(base, "GET", "/metrics")[0] == 401
        assert call(base, "GET", "/healthz")[0] == 200  # probes need no key
        assert call(base, "GET", "/docs")[0] == 200  # nor do the docs, their files and the document
        assert call(base, "GET", "/docs/static/swagger-ui.css")[0] == 200
        status, spec = call(base, "GET", "/openapi.json")
        assert status == 200 and spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
        assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "401" in spec["paths"]["/metrics"]["get"]["responses"] and "security" not in spec["paths"]["/healthz"]["get"]
        # either header may carry the key (the document's two schemes), even beside a wrong other one
        assert call(base, "GET", "/v1/model", headers={"X-API-Key": "wrong", "Authorization": "Bearer s3cret"})[0] == 200
        status, answer = call(base, "POST", "/v1/feedback", {"id": "x", "label": "pos"}, headers={"X-API-Key": "s3cret"})
        assert status == 409 and "log is off" in answer["error"]


def test_predictions_go_on_while_postgresql_is_down_and_the_gap_is_counted(tiny_run, postgres):
    serve = ServeConfig(threads=2, log_buffer_rows=20, max_wait_ms=2)
    with running_server(AppSettings(str(tiny_run), serve, postgres.url)) as (base, state):
        answered = 0
        for i in range(5):
            status, body = call(base, "POST", "/v1/predict", {"texts": [f"before {i}", "x"]})
            answered += len(body["predictions"])
        assert state.log.flush(timeout=30)
        postgres.stop("immediate")  # the database dies mid-traffic
        try:
            for i in range(30):
                status, body = call(base, "POST", "/v1/predict", {"texts": [f"during {i}", "y"]}, timeout=10)
                assert status == 200  # predictions never fail because of the log
                answered += len(body["predictions"])
            _, metrics = call(base, "GET", "/metrics")
            # 60 texts: at most 20 buffered and 20 held by the failing writer; the rest dropped, and counted
            assert state.log.unlogged >= 20
            assert "thrifty_prediction_log_unlogged_total" in metrics
        finally:
            postgres.start()
        assert state.log.flush(timeout=60)  # the buffer drains once the database is back
        assert state.log.count() + state.log.unlogged == answered
        assert state.log.write_errors > 0
