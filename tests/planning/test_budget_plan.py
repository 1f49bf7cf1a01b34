"""The budget planner: a run that does not fit is re-planned (and says how), or refused with the minimum."""



from thrifty.cli import main
from thrifty.config import config_from_dict
from thrifty.training.recipe import train

from tests.conftest import tiny_config


def _with(config: dict, **budget) -> dict:
    return config | {"budget": budget}


def test_planner_cuts_epochs_to_fit_and_saves_the_planned_config(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=1000)
    result = train(_with(config, max_minutes=0.25), output=tmp_path / "run", progress=False)
    plan = result.metrics["budget"]["plan"]
    assert plan["fits"] and plan["changes"] and plan["changes"][0].startswith("train.epochs 1000 -> ")
    planned_epochs = int(plan["changes"][0].split(" -> ")[1].split()[0].rstrip(":"))
    assert 1 <= planned_epochs < 1000
    saved = config_from_dict(__import__("yaml").safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert saved.train.epochs == planned_epochs  # --resume continues the planned run, not the original
    assert result.metrics["budget"]["spent_seconds"] <= 15 * 1.1 + 1.0


def test_a_budget_too_small_for_one_step_says_the_minimum(tiny_bert, small_csv, tmp_path, capsys):
    code = main(["train", "--model.name", str(tiny_bert), "--data.train", str(small_csv), "--train.num_threads", "2",
                 "--budget.max_minutes", "0.001", "--output", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "too small for even one training step" in err[0] and "at least" in err[0]
    assert not (tmp_path / "run").exists()  # nothing half-made is left behind

