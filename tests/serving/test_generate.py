"""POST /v1/generate over real HTTP on 127.0.0.1 for a model that writes text (an SFT run of a tiny Llama): answers
in prompt order, conversations through the chat template, limits, and each endpoint refusing the other's model."""

import pytest

from thrifty.config import ServeConfig
from thrifty.serving.app import AppSettings

from tests.serving.server_helpers import call, running_server


@pytest.fixture(scope="module")
def server(sft_run):
    serve = ServeConfig(max_texts_per_request=4, max_chars_per_text=200, threads=2, max_new_tokens=8)
    with running_server(AppSettings(str(sft_run), serve, None)) as (base, state):
        yield base, state


def test_prompts_are_answered_in_order(server):
    base, _ = server
    status, body = call(base, "POST", "/v1/generate", {"prompts": ["item 3 is delta. name:", "item 8 is alpha. name:"]})
    assert status == 200 and [g["text"] for g in body["generations"]] == ["delta", "alpha"]
    status, body = call(base, "POST", "/v1/generate", {"prompt": "item 1 is gamma. name:", "max_new_tokens": 1})
    assert status == 200 and body["generations"][0]["text"] == "gamma"
    status, body = call(base, "GET", "/v1/model")
    assert body["task"] == "causal_lm" and body["manifest"]["generation"]["prompt_format"] == "prompt_completion"


def test_concurrent_requests_each_get_their_own_answers(server):
    from concurrent.futures import ThreadPoolExecutor

    words = ["alpha", "beta", "gamma", "delta"]
    prompts = [[f"item {i} is {words[(i + j) % 4]}. name:" for j in range(1 + i % 3)] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda ps: call(server[0], "POST", "/v1/generate", {"prompts": ps}), prompts))
    for ps, (status, body) in zip(prompts, answers):
        assert status == 200 and [g["text"] for g in body["generations"]] == [p.split(" is ")[1][:-7] for p in ps]


@pytest.mark.parametrize("body,status,fragment", [
    ({}, 422, "exactly one of"),
    ({"prompt": "a", "prompts": ["b"]}, 422, "exactly one of"),
    ({"prompts": ["a"] * 5}, 413, "max_texts_per_request=4"),
    ({"prompt": "x" * 201}, 413, "max_chars_per_text=200"),
    ({"prompt": "a", "max_new_tokens": 9}, 422, "serve.max_new_tokens=8"),
    ({"prompt": "a", "temperature": -1}, 422, "temperature"),
    ({"messages": [{"content": "hi"}]}, 422, "role"),
    ({"prompts": []}, 422, "0 prompts"),
    ({"messages": []}, 422, "messages is an empty list"),
    ({"messages": [{"role": "user", "content": "x" * 150}, {"role": "user", "content": "y" * 60}]}, 413,
     "210 characters"),
    ({"prompt": "a", "temperature": 1e-300}, 422, "give 0 (greedy) or at least 1e-06"),
    ({"prompt": "a", "temperature": "0.5"}, 422, "temperature"),
    ({"prompt": "a", "max_new_tokens": 2.5}, 422, "max_new_tokens"),
    ({"prompts": ["a", "\ud800"]}, 422, "prompts[1] is not valid Unicode"),
])
def test_bad_generate_requests_get_one_clear_error(server, body, status, fragment):
    got, answer = call(server[0], "POST", "/v1/generate", body)
    assert got == status and fragment in answer["error"]


def test_settings_json_allows_and_stop_strings_the_model_cannot_write(server):
    status, body = call(server[0], "POST", "/v1/generate", {"prompt": "item 1 is gamma. name:", "max_new_tokens": 1.0,
                                                            "temperature": 0})
    assert status == 200 and body["generations"][0]["text"] == "gamma"  # 1.0 is the integer 1 in JSON
    # no token ends in these characters, so no answer can hold them: ignored (transformers would refuse the call)
    status, body = call(server[0], "POST", "/v1/generate", {"prompt": "item 1 is gamma. name:",
                                                            "stop": ["\U0001F9EC\u2603", "\ud800"]})
    assert status == 200 and body["generations"][0]["text"] == "gamma"
    status, body = call(server[0], "POST", "/v1/generate", {"prompt": "item 1 is gamma. name:", "stop": ["mm"]})
    assert status == 200 and body["generations"][0]["text"] == "ga"


def test_a_text_model_refuses_predict_and_a_classifier_refuses_generate(server, tiny_run):
    status, body = call(server[0], "POST", "/v1/predict", {"texts": ["a"]})
    assert status == 400 and "/v1/generate" in body["error"]
    with running_server(AppSettings(str(tiny_run), ServeConfig(threads=2), None)) as (base, _):
        status, body = call(base, "POST", "/v1/generate", {"prompt": "a"})
    assert status == 400 and "/v1/predict" in body["error"]
