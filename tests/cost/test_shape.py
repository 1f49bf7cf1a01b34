"""The measured shape of a run (cost/shape.py): a shorter max_length counted on it, without the tokenizer, is what
tokenising again gives, and so is its estimate."""

import pytest

from thrifty.cost.estimate import estimate_prepared, estimate_shape
from thrifty.cost.hardware import hardware_for
from thrifty.cost.shape import measure_shape
from thrifty.inputs import as_config, cut_warnings_at, prepare_inputs, reencode

from tests.conftest import tiny_config


@pytest.fixture
def varied_csv(tmp_path):
    """Texts from 3 to about 40 words, so that a short max_length cuts some of them and not others."""
    rows = ["text,label"]
    for i in range(48):
        words = " ".join(f"word{j}" for j in range(3 + (i * 7) % 38))
        rows.append(f"{'good' if i % 2 else 'bad'} {words},{'pos' if i % 2 else 'neg'}")
    path = tmp_path / "varied.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _prepared(tiny_bert, data, **train):
    config = as_config(tiny_config(tiny_bert, data, group_by_length=True, **train)
                       | {"data": {"train": str(data), "validation_fraction": 0.25, "max_length": 64}})
    config.cost.hardware = "a100"  # its profile's rates: no calibration, the same numbers every time
    return config, prepare_inputs(config, str(tiny_bert))


def test_a_shorter_max_length_is_counted_on_the_shape_as_tokenising_again_would(tiny_bert, varied_csv, monkeypatch):
    config, inputs = _prepared(tiny_bert, varied_csv)
    shape = measure_shape(config, inputs)
    assert shape.truncates and shape.max_length == 64 and max(shape.train_lengths) > 12

    def refused(*args, **kwargs):
        raise AssertionError("tokenised")

    with monkeypatch.context() as m:  # nothing is tokenised: not the tokenizer, not the task, not the token cache
        m.setattr(type(inputs.tokenizer), "__call__", refused)
        m.setattr(inputs.task, "encode", refused)
        m.setattr(inputs.tokens, "encode", refused)
        shorter = shape.with_max_length(12)
        warnings = cut_warnings_at(inputs, 12)

    config.data.max_length = 12
    again = reencode(inputs, 12, "test")
    measured = measure_shape(config, again)
    assert shorter.max_length == measured.max_length == 12
    assert shorter.train_lengths == measured.train_lengths and min(shorter.train_lengths) < 12
    assert shorter.val_lengths == measured.val_lengths and shorter.test_lengths == measured.test_lengths
    assert shorter.batches == measured.batches and shorter.memory == measured.memory
    assert warnings == again.data.report["tokens"]["cut_warnings"] and warnings
    hardware = hardware_for(config.cost)
    assert estimate_shape(shorter, hardware) == estimate_shape(measured, hardware) == estimate_prepared(config, again)


def test_fewer_epochs_on_the_shape_is_the_estimate_of_fewer_epochs(tiny_bert, varied_csv):
    config, inputs = _prepared(tiny_bert, varied_csv, epochs=5, eval_every_steps=2)
    shape = measure_shape(config, inputs)
    config.train.epochs = 2
    hardware = hardware_for(config.cost)
    e = estimate_shape(shape.with_epochs(2), hardware)
    assert e == estimate_prepared(config, inputs) and e["epochs"] == 2


def test_a_cpu_estimate_of_a_shape_needs_a_calibration(tiny_bert, varied_csv):
    config, inputs = _prepared(tiny_bert, varied_csv)
    config.cost.hardware = "cpu"
    with pytest.raises(ValueError, match="calibration"):
        estimate_shape(measure_shape(config, inputs), hardware_for(config.cost))
