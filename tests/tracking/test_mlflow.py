"""MLflow tracking: the local SQLite store, a real `mlflow server` round trip with nested trials, a server that is down."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from thrifty.cli import main
from thrifty.training.recipe import train
from thrifty.tuning.search import tune

from tests.conftest import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def _check_run(client: MlflowClient, run, steps: int) -> None:
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.trainable_parameters"].isdigit()
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == steps  # every step arrived
    assert len(client.get_metric_history(run.info.run_id, "validation/accuracy")) == 2  # every evaluation
    assert "system/tokens_per_second" in run.data.metrics and "final/validation_accuracy" in run.data.metrics
    assert {"metrics.json", "data_report.json", "config.yaml", "model"} <= _artifacts(client, run.info.run_id)
    assert "model/model.safetensors" in _artifacts(client, run.info.run_id, "model")
    assert run.info.status == "FINISHED"


def test_local_sqlite_store_by_default(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    config["tracking"]["mlflow"] = True
    result = train(config, output=tmp_path / "runs" / "one", progress=False)
    db = tmp_path / "runs" / "mlflow.db"
    assert db.exists() and (tmp_path / "runs" / "mlartifacts").is_dir()  # beside the run folders, not in the cwd
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("thrifty").experiment_id])
    _check_run(client, run, result.metrics["train"]["steps"])


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow  # starts a real `mlflow server` (about 10 s) and runs a search through it
def test_round_trip_through_a_real_tracking_server_with_nested_trials(tiny_bert, small_csv, tmp_path, mlflow_server):
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    config["tracking"]["mlflow"] = {"tracking_uri": mlflow_server, "experiment": "round-trip"}
    result = train(config, output=tmp_path / "run", progress=False)
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("round-trip")
    (run,) = client.search_runs([experiment.experiment_id])
    _check_run(client, run, result.metrics["train"]["steps"])

    space = tmp_path / "space.yaml"
    space.write_text("replace_defaults: true\ntrain.learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}\n")
    tune(config | {"tracking": {"mlflow": {"tracking_uri": mlflow_server, "experiment": "search"}}}, trials=2,
         output=tmp_path / "search", space=space, progress=False, log=lambda *a: None)
    runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2  # the trials appear as nested runs
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert "tune.json" in _artifacts(client, parents[0].info.run_id)


def test_a_server_that_is_down_warns_once_and_training_goes_on(tiny_bert, small_csv, tmp_path, capsys):
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    code = main(["train", "--model.name", str(tiny_bert), "--data.train", str(small_csv), "--train.num_threads", "2",
                 "--data.validation_fraction", "0.25", "--tracking.mlflow.tracking_uri", down,
                 "--output", str(tmp_path / "run"), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert code == 0 and len(err) == 1 and "not reachable" in err[0] and "training continues" in err[0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())  # kept locally, not lost
    assert metrics["validation"]["accuracy"] > 0
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == metrics["train"]["steps"]
