"""`thrifty tune --storage URL`: workers that share one study (SQLite here; real PostgreSQL and real processes in the
slow tests), the trial count over all workers, the summary written once, a dead worker's trial run again."""

import json
import os
import subprocess
import sys

import optuna
import pytest
import yaml

from thrifty.cli import main
from thrifty.errors import ConfigError
from thrifty.tuning.search import tune

from tests.conftest import tiny_config
from tests.tuning.test_search import SPACE, _quiet


def test_a_second_worker_joins_the_study_with_its_config_and_writes_nothing_twice(tiny_bert, small_csv, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    first = tune(tiny_config(tiny_bert, small_csv, epochs=1), trials=3, output=tmp_path / "a", space=tmp_path / "space.yaml",
                 storage=storage, study_name="s", heartbeat_seconds=1, progress=False, log=_quiet)
    lines = []
    # No config, no space: the study's. It has its 3 trials: nothing runs, and the summary is already written.
    second = tune(trials=3, output=tmp_path / "b", storage=storage, study_name="s", progress=False, log=lines.append)
    assert second.best == first.best and first.summary["counts"]["complete"] + first.summary["counts"]["pruned"] == 3
    assert (tmp_path / "a" / "best_config.yaml").exists() and not (tmp_path / "b" / "best_config.yaml").exists()
    assert any("written by worker" in line and str(tmp_path / "a") in line for line in lines)
    assert not (tmp_path / "b" / "trials").exists()
    # Raising the count later: the new worker runs only the trials missing, then writes the summary of all 4.
    third = tune(trials=4, output=tmp_path / "c", storage=storage, study_name="s", progress=False, log=_quiet)
    assert len([t for t in third.summary["trials"] if t["state"] in ("complete", "pruned")]) == 4
    assert len(list((tmp_path / "c" / "trials").glob("trial-*.log"))) == 1 and (tmp_path / "c" / "tune.json").exists()


def test_a_worker_with_another_config_is_refused(tiny_bert, small_csv, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    tune(tiny_config(tiny_bert, small_csv, epochs=1), trials=1, output=tmp_path / "a", space=tmp_path / "space.yaml",
         storage=storage, study_name="s", progress=False, log=_quiet)
    other = tiny_config(tiny_bert, small_csv, epochs=1)
    other["train"]["batch_size"] = 4
    with pytest.raises(ConfigError, match="train.batch_size: 4 here"):
        tune(other, trials=1, output=tmp_path / "b", space=tmp_path / "space.yaml", storage=storage, study_name="s",
             progress=False, log=_quiet)
    with pytest.raises(ConfigError, match="joined, not resumed"):
        tune(trials=1, output=tmp_path / "b", storage=storage, study_name="s", resume=True, log=_quiet)


def test_an_unreachable_storage_is_one_line_naming_it(capsys, tmp_path):
    code = main(["tune", "--storage", "postgresql://someone:secret@127.0.0.1:1/studies", "--output", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot reach the study storage postgresql+psycopg://someone:***@127.0.0.1:1/studies" in err
    assert "secret" not in err and not (tmp_path / "t").exists()


# --------------------------------------------------------------------------------------------------
# real PostgreSQL, real worker processes


def _worker(config, out, storage, study, *, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "thrifty", "tune", str(config), "--storage", storage, "--study", study,
               "--trials", "4", "--output", str(out), "--space", str(config.parent / "space.yaml"), "--heartbeat", "1",
               "--no-progress"]
    # One thread each: two workers with 2 threads on 2 cores slow each other down 4x. Output to a file, not a pipe: a
    # pipe nobody reads while the other worker is awaited fills up and blocks its writer
    log = out.parent / f"{out.name}.worker.log"
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                               stdout=open(log, "w"), stderr=subprocess.STDOUT)
    process.log = log
    return process


def _finish(process: subprocess.Popen) -> str:
    process.wait(timeout=600)
    return process.log.read_text()


def _setup(tiny_bert, small_csv, tmp_path):
    config = tiny_config(tiny_bert, small_csv, epochs=2)
    config["train"]["num_threads"] = 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return path


@pytest.mark.slow
def test_two_workers_on_postgresql_share_the_trials_and_one_writes_the_summary(tiny_bert, small_csv, tmp_path, postgres):
    storage = postgres.url
    config = _setup(tiny_bert, small_csv, tmp_path)
    workers = [_worker(config, tmp_path / name, storage, "shared") for name in ("a", "b")]
    outputs = [_finish(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=postgres.url.replace("postgresql://", "postgresql+psycopg://"))
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 4  # over both workers, not 4 each
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both worked
    written = [name for name in ("a", "b") if (tmp_path / name / "tune.json").exists()]
    assert len(written) == 1  # once
    summary = json.loads((tmp_path / written[0] / "tune.json").read_text())
    assert summary["counts"]["complete"] + summary["counts"]["pruned"] == 4
    assert sum("written by worker" in o for o in outputs) == 1


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_by_the_heartbeat_and_run_again(tiny_bert, small_csv, tmp_path, postgres):
    storage = postgres.url
    config = _setup(tiny_bert, small_csv, tmp_path)
    doomed = _worker(config, tmp_path / "a", storage, "killed", env={"THRIFTY_FAULT_AT_STEP": "3:KILL"})  # kill -9 mid-trial
    _finish(doomed)
    assert doomed.returncode == -9
    survivor = _worker(config, tmp_path / "b", storage, "killed")
    out = _finish(survivor)
    assert survivor.returncode == 0, out
    study = optuna.load_study(study_name="killed", storage=storage.replace("postgresql://", "postgresql+psycopg://"))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["worker"].endswith(f":{doomed.pid}")
    rerun = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(rerun) == 1 and rerun[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert rerun[0].params == failed[0].params and f"a re-run of trial {failed[0].number}" in out
    summary = json.loads((tmp_path / "b" / "tune.json").read_text())
    assert summary["counts"]["complete"] + summary["counts"]["pruned"] == 4 and summary["counts"]["fail"] == 1
