"""A task added from outside the package: defined here, registered, then trained, evaluated, predicted with and served
with no file under src/ naming it. If some module still compared task names instead of asking the task's traits,
one of these steps would refuse the toy task or treat it as something else."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import thrifty
from thrifty.errors import ConfigError
from thrifty.tasks import TASKS, get_task, register
from thrifty.tasks.classification import SequenceClassification
from thrifty.traits import TASKS as TASK_TRAITS
from thrifty.traits import TaskTraits

from tests.conftest import tiny_config
from tests.serving.server_helpers import call, running_server

TOY_TRAITS = TaskTraits("toy_polarity", ("accuracy", "loss"), ("full", "head"), predicts_labels=True,
                        plot_name="confusion_matrix")


class ToyPolarity(SequenceClassification):
    """One label per text like classification, but its own name, fewer metrics and strategies, and a summary line of
    its own: what a third-party task would change."""

    traits = TOY_TRAITS  # its name, plot and metrics follow from these

    @classmethod
    def for_config(cls, config) -> "ToyPolarity":
        return cls()

    def summary(self, metrics) -> str:
        return f"toy accuracy {metrics['accuracy']:.4f}"


@pytest.fixture
def toy_task():
    register(ToyPolarity)
    yield ToyPolarity
    TASKS.pop(TOY_TRAITS.name, None)
    TASK_TRAITS.pop(TOY_TRAITS.name, None)


def _rows(path, n):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        for i in range(n):
            writer.writerow([f"I loved this wonderful film number {i}", "up"])
            writer.writerow([f"I hated this terrible film number {i}", "down"])
    return path


def test_a_registered_task_trains_evaluates_predicts_and_serves(toy_task, tiny_bert, tmp_path):
    from thrifty.api import evaluate
    from thrifty.cli import main
    from thrifty.config import ServeConfig
    from thrifty.serving.app import AppSettings

    assert isinstance(get_task("toy_polarity"), ToyPolarity) and get_task("toy_polarity").name == "toy_polarity"
    with pytest.raises(ConfigError, match="already registered"):
        register(type("Impostor", (ToyPolarity,), {}))
    config = tiny_config(tiny_bert, _rows(tmp_path / "train.csv", 30), epochs=6, learning_rate=1e-2)
    config.update(task="toy_polarity", tracking={"tensorboard": False, "energy": False})
    result = thrifty.train(config, output=tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "model" / "thrifty.json").read_text())
    assert manifest["task"] == "toy_polarity"
    assert (tmp_path / "run" / "confusion_matrix_validation.png").is_file()  # its plot_name
    assert result.metrics["validation"]["accuracy"] >= 0.9  # the toy data are easy: the model learned them

    metrics = evaluate(tmp_path / "run", str(_rows(tmp_path / "held_out.csv", 6)))
    assert metrics["accuracy"] >= 0.9 and metrics["examples"] == 12
    assert metrics["plot"] == "confusion_matrix.png" and (Path(metrics["output_dir"]) / metrics["plot"]).is_file()

    predictions = tmp_path / "predictions.jsonl"
    assert main(["predict", str(tmp_path / "run"), "--text", "I loved this wonderful film number 99",
                 "--output-file", str(predictions)]) == 0
    assert json.loads(predictions.read_text().splitlines()[0])["label"] == "up"

    with running_server(AppSettings(str(tmp_path / "run"), ServeConfig(), None)) as (base, _):
        status, body = call(base, "POST", "/v1/predict", {"texts": ["I hated this terrible film number 99"]})
        assert status == 200 and body["predictions"][0]["label"] == "down"
        status, info = call(base, "GET", "/v1/model")
        assert status == 200 and info["task"] == "toy_polarity"
