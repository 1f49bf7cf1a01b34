"""`serve models:/NAME@champion`: the server follows the alias and swaps models under load without a failed request;
a version that cannot load is not swapped in (the old model keeps answering)."""

from __future__ import annotations

import shutil
import threading
import time

import sqlalchemy as sa

from thrifty.cli import main
from thrifty.config import ServeConfig
from thrifty.registry.store import Registry
from thrifty.serving.app import AppSettings

from tests.serving.server_helpers import call, running_server


def _other_weights(model_dir, target):
    """A copy of a model folder with slightly different weights (so another version), same task and labels."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, target)
    tensors = load_file(target / "model.safetensors")
    name = next(k for k in tensors if k.endswith("classifier.bias"))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


def _wait(condition, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_server_follows_the_champion_under_load_without_failed_requests(store, tiny_run, warm_run, tmp_path):
    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    registry.register(warm_run, "tiny")
    broken, _ = registry.register(_other_weights(warm_run / "model", tmp_path / "other"), "tiny")
    registry.promote("tiny", 1, reason="first")
    db = tmp_path / "log.db"
    serve = ServeConfig(registry_poll_seconds=0.2, threads=2, max_wait_ms=2)
    settings = AppSettings("models:/tiny@champion", serve, f"sqlite:///{db}", registry_uri=store)
    answers: list[tuple[int, int, str]] = []  # (client, status, version)
    stop = threading.Event()

    def client(number: int) -> None:
        texts = ["I loved this wonderful film", "I hated this terrible film", "a film"][: 1 + number % 3]
        while not stop.is_set():
            status, body = call(base, "POST", "/v1/predict", {"texts": texts})
            ok = status == 200 and len(body["predictions"]) == len(texts)
            answers.append((number, status if ok else -1, body["model"]["version"] if ok else str(body)))

    with running_server(settings) as (base, state):
        status, info = call(base, "GET", "/v1/model")
        assert info["version"] == "1" and info["registry"]["uri"] == "models:/tiny@champion"
        clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for c in clients:
            c.start()
        _wait(lambda: sum(v == "1" for _, _, v in answers) >= 20)
        registry.promote("tiny", 2, reason="swap under load")
        _wait(lambda: sum(v == "2" for _, _, v in answers) >= 20)
        # a version whose files are damaged: not swapped in, version 2 keeps answering
        (registry.local_model(broken) / "model.safetensors").write_bytes(b"not a model")
        registry.promote("tiny", broken.version, reason="a broken version")
        _wait(lambda: str(broken.version) in call(base, "GET", "/v1/model")[1]["registry"]["not_swapped"])
        seen_after = len(answers)
        _wait(lambda: len(answers) >= seen_after + 20)
        stop.set()
        for c in clients:
            c.join(30)
        status, info = call(base, "GET", "/v1/model")
        metrics = call(base, "GET", "/metrics")[1]
        assert state.swaps == 1 and info["version"] == "2"
        assert 'thrifty_model_swaps_total{result="done"} 1.0' in metrics
        assert 'thrifty_model_swaps_total{result="failed"} 1.0' in metrics
        state.log.flush()

    assert answers and all(status == 200 for _, status, _ in answers), [a for a in answers if a[1] != 200][:3]
    for number in range(6):  # each client saw version 1, then version 2, never back: the swap is one moment
        versions = [v for n, _, v in answers if n == number]
        assert versions == sorted(versions) and set(versions) <= {"1", "2"}
    assert {v for _, _, v in answers} == {"1", "2"}
    with sa.create_engine(f"sqlite:///{db}").connect() as connection:
        logged = dict(connection.execute(sa.text("select model_version, count(*) from predictions group by 1")).all())
    answered = {"1": 0, "2": 0}
    for number, _, version in answers:
        answered[version] += 1 + number % 3
    assert logged == answered  # every answered prediction is in the log, under the version that made it


def test_serving_from_the_registry_refuses_bad_uris_before_a_port_opens(store, tiny_run, capsys):
    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    assert main(["serve", "models:/tiny@champion", "--registry", store]) == 2
    assert "tiny has no 'champion' alias yet; promote one: thrifty registry promote tiny VERSION" in capsys.readouterr().err
    assert main(["serve", "models:/nosuch/1", "--registry", store]) == 2
    assert "no registered model named 'nosuch'" in capsys.readouterr().err
    assert main(["serve", "models:/tiny", "--registry", store]) == 2
    assert "models:/NAME@champion" in capsys.readouterr().err
    assert main(["serve", "models:/tiny/1", "--registry", "http://127.0.0.1:9"]) == 2
    assert "cannot be reached" in capsys.readouterr().err
