"""`thrifty monitor` on a real prediction log: quiet on traffic like the training data, exit 1 on drifted traffic,
reports that render in a real headless browser, and clear refusals."""

import json
import shutil
import uuid
from datetime import timedelta

import pytest

from thrifty.cli import main
from thrifty.inference.predictor import Predictor
from thrifty.serving.predlog import PredictionLog, now_utc


def fill_log(db, run, texts, true_labels=None, days_ago=0, store_text=True):
    """Log the model's own predictions for `texts`, as thrifty serve would."""
    predictor = Predictor.load(run)
    log = PredictionLog(str(db), store_text=store_text)
    log.start()
    results = predictor.predict(texts)
    when = now_utc() - timedelta(days=days_ago)
    rows = [log.prediction_row(prediction_id=uuid.uuid4().hex, created_at=when, model_name="m", model_version="v",
                               text=t, result=r, latency_ms=1.0) for t, r in zip(texts, results)]
    if true_labels is not None:
        for row, label in zip(rows, true_labels):
            row["true_label"], row["feedback_at"] = label, when
    log.record(rows)
    assert log.flush(timeout=30)
    log.close()
    return results


def like_training(n, offset=0):
    """Texts as in tiny_run's training file (the same numbers, 0-29: nothing new to tell them apart by)."""
    return [f"I {'loved this wonderful' if i % 2 else 'hated this terrible'} film number {(i + offset) % 30}"
            for i in range(n)]


def drifted(n):
    return [f"zq{i} ##@@ {'kx' * (i % 7 + 5)} ¤¤ 0x{i:08x} " * 4 for i in range(n)]


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target)
    return target


def test_traffic_like_the_training_data_is_not_flagged(run_copy, tmp_path, capsys):
    fill_log(run_copy / "serve" / "predictions.db", run_copy, like_training(60))
    code = main(["monitor", str(run_copy), "--output", str(tmp_path / "report")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert code == 0, out
    assert not report["drift"] and report["predictions"] == 60
    assert not report["checks"]["lengths"]["flagged"] and not report["checks"]["embeddings"]["flagged"]
    assert "no drift flagged" in out


def test_drifted_traffic_and_wrong_answers_are_flagged_with_exit_code_1(run_copy, tmp_path, capsys):
    db = tmp_path / "log.db"
    fill_log(db, run_copy, like_training(40), days_ago=1)
    fill_log(db, run_copy, drifted(80))
    opposite = {"pos": "neg", "neg": "pos"}
    answers = Predictor.load(run_copy).predict(like_training(40, offset=100))
    fill_log(db, run_copy, like_training(40, offset=100), true_labels=[opposite[r["label"]] for r in answers])
    code = main(["monitor", str(run_copy), "--db", str(db), "--output", str(tmp_path / "report")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert code == 1, out
    assert {"lengths", "embeddings", "accuracy"} <= set(report["flagged"])
    assert report["checks"]["accuracy"]["accuracy"] == 0.0 and report["checks"]["accuracy"]["feedback"] == 40
    assert "drift flagged" in out
    # --since keeps only today's traffic: the drifted and the wrongly answered texts
    main(["monitor", str(run_copy), "--db", str(db), "--since", "12h", "--output", str(tmp_path / "today")])
    today = json.loads((tmp_path / "today" / "report.json").read_text())
    assert today["predictions"] == 120


def test_the_html_report_renders_in_a_headless_browser(run_copy, tmp_path):
    from tests.monitoring.browser import rendered

    db = tmp_path / "log.db"
    results = fill_log(db, run_copy, drifted(50))
    fill_log(db, run_copy, like_training(30), true_labels=["pos"] * 30, days_ago=1)
    main(["monitor", str(run_copy), "--db", str(db), "--output", str(tmp_path / "report")])
    page = rendered(tmp_path / "report" / "report.html")
    assert page["title"].startswith("thrifty monitor")
    assert page["status"].startswith("drift flagged")
    assert page["images"] == 3 and all(width > 100 for width in page["image_widths"])  # lengths, labels, accuracy
    assert page["flagged_rows"] >= 1 and page["rows"] == 6  # header + 5 checks
    assert len(results) == 50


def test_hash_only_logs_skip_the_text_checks_and_say_so(run_copy, tmp_path):
    db = tmp_path / "log.db"
    fill_log(db, run_copy, like_training(40), store_text=False)
    main(["monitor", str(run_copy), "--db", str(db), "--output", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "hashes" in report["checks"]["texts"]["note"] and "predictions" in report["checks"]


@pytest.mark.parametrize("args, fragment", [
    (["--since", "yesterday"], "neither a span"),
    (["--since", "2h"], "no predictions since"),
])
def test_bad_monitor_input_is_one_clear_line(run_copy, tmp_path, capsys, args, fragment):
    db = tmp_path / "log.db"
    fill_log(db, run_copy, like_training(5), days_ago=3)
    capsys.readouterr()
    assert main(["monitor", str(run_copy), "--db", str(db), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_a_missing_log_is_refused(run_copy, capsys):
    assert main(["monitor", str(run_copy)]) == 2
    assert "no prediction log at" in capsys.readouterr().err


def test_a_registered_champion_is_monitored_from_the_registry(run_copy, store, tmp_path, capsys):
    """models:/NAME@champion: that version's model, the log serve models:/NAME@... writes, its run's data."""
    from thrifty.registry.store import Registry
    from thrifty.serving.server import registry_log_path

    registry = Registry(store, create=True)
    registry.register(run_copy, "films")
    assert main(["monitor", "models:/films@champion", "--registry", store]) == 2  # nothing promoted yet
    assert "no 'champion' alias yet" in capsys.readouterr().err
    registry.promote("films", 1, reason="first")
    assert main(["monitor", "models:/films@champion", "--registry", store]) == 2
    assert f"no prediction log at sqlite:///{registry_log_path(store, 'films')}" in capsys.readouterr().err
    fill_log(registry_log_path(store, "films"), run_copy, drifted(60))
    assert main(["monitor", "models:/films@champion", "--registry", store]) == 1
    out = capsys.readouterr().out
    report = json.loads(next((registry_log_path(store, "films").parent / "monitor").glob("*/report.json")).read_text())
    assert report["model"] == "models:/films@champion" and report["drift"] and "embeddings" in report["flagged"]
    from thrifty.inference.predictor import run_splits

    train_split = run_splits(Predictor.load(run_copy), "-")[0]  # the run's training split, rebuilt from its config
    assert report["reference_texts"] == len(train_split) > 0
    assert "drift flagged" in out


def test_accuracy_is_reported_only_from_enough_feedback_rows(run_copy, tmp_path, capsys):
    """One feedback row (or none) gives no accuracy and no verdict on it: the console, report.json and report.html
    say how many rows there are and how many are needed; --min-feedback sets the number."""
    from tests.monitoring.browser import rendered

    db = tmp_path / "log.db"
    fill_log(db, run_copy, like_training(40))
    answer = Predictor.load(run_copy).predict(like_training(1, offset=7))[0]["label"]
    fill_log(db, run_copy, like_training(1, offset=7), true_labels=[{"pos": "neg", "neg": "pos"}[answer]])
    assert main(["monitor", str(run_copy), "--db", str(db), "--output", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("accuracy"))
    assert "not judged" in line and "1 feedback row, needs 30" in line and " ok " not in line and "0.0" not in line
    assert "not judged: accuracy (1 feedback row, needs 30)" in out
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    accuracy = report["checks"]["accuracy"]
    assert accuracy["accuracy"] is None and accuracy["judged"] is False and accuracy["feedback"] == 1
    assert report["not_judged"] == ["accuracy"] and report["min_feedback"] == 30 and not report["drift"]
    page = rendered(tmp_path / "one" / "report.html")
    assert "not judged: accuracy (1 feedback row, needs 30)" in page["status"]
    assert page["images"] == 2  # lengths and labels: no accuracy plot without a period of 30 rows

    main(["monitor", str(run_copy), "--db", str(db), "--min-feedback", "1", "--output", str(tmp_path / "n1")])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("accuracy"))
    assert "accuracy 0.0, ci95 [0.0, 0.7935] on 1 feedback row" in line  # judged from 1 row when asked to

    fill_log(tmp_path / "none.db", run_copy, like_training(40))
    main(["monitor", str(run_copy), "--db", str(tmp_path / "none.db"), "--output", str(tmp_path / "none")])
    assert "accuracy        not judged 0 feedback rows, needs 30" in capsys.readouterr().out
