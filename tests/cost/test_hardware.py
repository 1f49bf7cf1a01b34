"""Hardware profiles: the table parses, prices have sources, unknown names fail, GPU time has two regimes."""

import json

import pytest

from thrifty.cli import main
from thrifty.cost.estimate import estimate
from thrifty.cost.hardware import get_hardware, profile_names
from thrifty.errors import ConfigError

from tests.conftest import tiny_config


def test_every_profile_has_a_source_and_a_date():
    for name in profile_names():
        hw = get_hardware(name)
        assert hw.source and hw.as_of and hw.kind in ("cpu", "gpu")
        if hw.kind == "gpu":
            assert hw.peak_tflops > 0 and hw.memory_gib > 0


def test_unknown_profile_names_the_close_match():
    with pytest.raises(ConfigError, match="did you mean 'a10g'"):
        get_hardware("a10")


def test_this_machine_is_the_cpu_profile_priced_per_core():
    hw = get_hardware("auto")
    if hw.kind == "gpu":  # on a GPU machine `auto` is its GPU's profile, priced per GPU; check the CPU one instead
        assert hw.cores == 1
        hw = get_hardware("cpu")
    assert hw.name == "cpu" and hw.machine_price_per_hour == pytest.approx(hw.price_per_hour * hw.cores)
    assert get_hardware("auto", price_per_hour=1.0).machine_price_per_hour == pytest.approx(1.0)  # the config's is per machine


def test_gpu_step_time_is_compute_or_host_bound():
    hw = get_hardware("a100")
    small = hw.train_step_seconds(1e9, layers=6)  # a tiny step: the host's launches dominate
    assert small == pytest.approx(6 * hw.host_ms_per_layer / 1000)
    big = hw.train_step_seconds(1e15, layers=6)
    assert big == pytest.approx(1e15 / (hw.peak_tflops * 1e12 * hw.efficiency))


def test_estimate_on_another_machine_prices_it_there(tiny_bert, small_csv):
    e = estimate(tiny_config(tiny_bert, small_csv) | {"cost": {"hardware": "t4"}})
    assert e["calibration"] is None and e["hardware"]["name"] == "t4" and e["fits_memory"] is True
    assert e["cost"] == pytest.approx(e["predicted_seconds"] / 3600 * 0.526, rel=0.2)  # seconds rounded to 0.1
    e = estimate(tiny_config(tiny_bert, small_csv) | {"cost": {"hardware": "h200"}})
    assert e["cost"] is None and "set cost.price_per_hour" in e["cost_note"]


def test_hardware_command_lists_every_profile(capsys):
    assert main(["hardware", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == profile_names()
    assert main(["estimate", "--hardware", "a10"]) == 2
    assert "unknown hardware profile 'a10'" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--cost.price_per_hour", "-1"], "cost.price_per_hour=-1.0 must be >= 0"),
    (["--cost.price_per_hour", "cheap"], "cost.price_per_hour must be a number"),
    (["--cost.efficiency", "2"], "cost.efficiency=2.0 must be in (0, 1]"),
    (["--cost.hardware", "tpu-v9"], "unknown hardware profile 'tpu-v9'"),
])
def test_bad_prices_and_profiles_fail_with_one_line(args, message, capsys):
    assert main(["config", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
