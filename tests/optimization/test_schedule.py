"""When validation runs: per epoch, several times per epoch, every N steps; always at the last step."""

from thrifty.training.recipe import train
from thrifty.optimization.schedule import evaluation_steps

from tests.conftest import tiny_config


def test_evaluation_steps():
    assert evaluation_steps(24, 8) == [8, 16, 24]  # each epoch's end
    assert evaluation_steps(24, 8, per_epoch=2) == [4, 8, 12, 16, 20, 24]
    assert evaluation_steps(21, 7, per_epoch=2) == [4, 7, 11, 14, 18, 21]
    assert evaluation_steps(20, 8) == [8, 16, 20]  # a step limit mid-epoch: the last step too
    assert evaluation_steps(20, 8, every=6) == [6, 12, 18, 20]
    assert evaluation_steps(0, 8) == []


def test_two_evaluations_per_epoch_in_the_loop_and_the_estimate(tiny_bert, small_csv, tmp_path):
    from thrifty.cost.estimate import estimate

    config = tiny_config(tiny_bert, small_csv, epochs=2) | {}
    config["train"]["evaluations_per_epoch"] = 2
    result = train(config, output=tmp_path / "run", progress=False)
    steps = [h["step"] for h in result.metrics["history"]]
    assert steps == evaluation_steps(result.metrics["train"]["steps"], result.metrics["train"]["steps"] // 2, per_epoch=2)
    assert len(steps) == 4 and estimate(config, calibration_steps=1)["evaluations"] == 4
