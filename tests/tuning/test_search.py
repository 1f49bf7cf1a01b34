"""`thrifty tune`: the study, the best config, resume, a damaged study, bad spaces, the search budget."""

import json

import optuna
import pytest
import yaml

from thrifty.cli import main
from thrifty.config import Config, load_config
from thrifty.errors import ConfigError, ThriftyError
from thrifty.training.recipe import train
from thrifty.tuning.search import parse_space, tune

from tests.conftest import tiny_config

SPACE = {"train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "train.epochs": {"low": 1, "high": 3},
         "replace_defaults": True}


def _quiet(*args):
    pass


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _base(tiny_bert, small_csv, tmp_path) -> dict:
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    test = tmp_path / "test.csv"
    test.write_text("text,label\nwhat a lovely movie,pos\nwhat an awful movie,neg\n")
    config["data"]["test"] = str(test)  # must never be evaluated during the search
    return config


def test_search_writes_the_study_the_best_config_and_a_plot(tiny_bert, small_csv, tmp_path, space_file):
    out = tmp_path / "search"
    result = tune(_base(tiny_bert, small_csv, tmp_path), trials=4, output=out, space=space_file, progress=False, log=_quiet)
    summary = json.loads((out / "tune.json").read_text())
    assert len(summary["trials"]) == 4 and (out / "study.db").exists() and (out / "trials.png").exists()
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    assert summary["best"]["value"] == max(t["value"] for t in complete) == result.best["value"]
    for t in summary["trials"]:  # each trial is a run folder, trained without the test set
        metrics = json.loads((tmp_path / "search" / "trials" / f"trial-{t['number']:03d}" / "metrics.json").read_text())
        assert "test" not in metrics and set(t["params"]) == {"train.learning_rate", "train.epochs"}
    best = load_config(out / "best_config.yaml")  # what `thrifty train` reads, as is
    assert best.train.learning_rate == pytest.approx(summary["best"]["params"]["train.learning_rate"])
    assert best.train.epochs == summary["best"]["params"]["train.epochs"]
    assert best.data.test == str(tmp_path / "test.csv") and not best.budget.active  # test kept for the final run; no search budget
    run = train(best, output=tmp_path / "final", progress=False)
    assert "test" in run.metrics


def test_an_interrupted_search_resumes(tiny_bert, small_csv, tmp_path, space_file):
    out = tmp_path / "search"
    tune(_base(tiny_bert, small_csv, tmp_path), trials=2, output=out, space=space_file, progress=False, log=_quiet)
    study = optuna.load_study(study_name="thrifty", storage=f"sqlite:///{out / 'study.db'}")
    study.ask()  # a trial that was running when the search was killed
    summary = tune(trials=4, output=out, resume=True, progress=False, log=_quiet).summary
    states = [t["state"] for t in summary["trials"]]
    assert states.count("fail") == 1 and sum(s in ("complete", "pruned") for s in states) == 4
    with pytest.raises(ThriftyError, match="already exists"):
        tune(_base(tiny_bert, small_csv, tmp_path), trials=1, output=out, progress=False, log=_quiet)


def test_a_damaged_study_is_reported_not_overwritten(tiny_bert, small_csv, tmp_path, space_file):
    out = tmp_path / "search"
    tune(_base(tiny_bert, small_csv, tmp_path), trials=1, output=out, space=space_file, progress=False, log=_quiet)
    (out / "study.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ThriftyError, match="damaged"):
        tune(trials=2, output=out, resume=True, progress=False, log=_quiet)
    assert (out / "study.db").read_bytes().startswith(b"this is not sqlite")


@pytest.mark.parametrize("space,message", [
    ({"train.learning_rate": {"low": 1e-3, "high": 1e-5}}, "must be below high"),
    ({"train.learnin_rate": {"low": 1e-5, "high": 1e-3}}, "did you mean 'learning_rate'"),
    ({"train.learning_rate": {"low": 0.0, "high": 1e-3, "log": True}}, "log scale needs low > 0"),
    ({"train.batch_size": {"choices": []}}, "non-empty list"),
    ({"strategy.name": {"choices": ["full", "setfit"]}}, "config rejects"),
    ({"train.epochs": {"low": 0, "high": 3}}, "config rejects"),
])
def test_impossible_spaces_are_rejected(space, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space, Config())


def test_cli_bad_space_is_one_line(tiny_bert, small_csv, tmp_path, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("train.warmup_ratio: {low: 0.5, high: 0.1}\n")
    code = main(["tune", "--model.name", str(tiny_bert), "--data.train", str(small_csv), "--space", str(bad),
                 "--output", str(tmp_path / "s"), "--trials", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.warmup_ratio" in err[0] and not (tmp_path / "s").exists()


def test_the_search_stops_at_its_budget(tiny_bert, small_csv, tmp_path, space_file):
    from thrifty.cost.estimate import estimate

    config = _base(tiny_bert, small_csv, tmp_path)
    one = estimate(config, calibration_steps=1)
    limit = 3 * (one["train_flops_per_epoch"] + one["eval_flops_each"])  # about three 1-epoch trials
    config["budget"] = {"max_flops": limit}
    summary = tune(config, trials=20, output=tmp_path / "search", space=space_file, progress=False, log=_quiet).summary
    assert summary["stopped_by_budget"] and summary["spent_flops"] <= limit
    assert 1 <= summary["counts"]["complete"] + summary["counts"]["pruned"] < 20


def test_multi_objective_search_plots_the_pareto_front(tiny_bert, small_csv, tmp_path, space_file):
    summary = tune(_base(tiny_bert, small_csv, tmp_path), trials=3, output=tmp_path / "search", space=space_file,
                   multi_objective=True, progress=False, log=_quiet).summary
    assert summary["pareto_front"] and (tmp_path / "search" / "pareto.png").exists()
    costs = [r["cost"] for r in summary["pareto_front"]]
    assert all(c is not None and c > 0 for c in costs)


def test_on_evaluation_can_stop_a_run_keeping_its_best_model(tiny_bert, small_csv, tmp_path):
    seen = []
    result = train(tiny_config(tiny_bert, small_csv, epochs=3), output=tmp_path / "run", progress=False,
                   on_evaluation=lambda n, metrics: seen.append(n) or n == 1)
    assert seen == [1] and result.metrics["train"]["stop_reason"] == "pruned"
    assert (tmp_path / "run" / "model").is_dir()
