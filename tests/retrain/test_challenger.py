"""`thrifty retrain` on real components: a registry on MLflow (SQLite), a prediction log with feedback, tiny models
trained for real. A challenger that learned the new data is promoted; one trained on shuffled labels is not; no new
data is "nothing to do"; a second retrain of the same model exits cleanly while the first holds the lock."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from thrifty.cli import main
from thrifty.config import RetrainConfig
from thrifty.registry.store import Registry
from thrifty.retrain.challenger import decide, mcnemar_exact, retrain
from thrifty.serving.locks import DatabaseLock, locks
from thrifty.serving.predlog import make_engine, predictions
from thrifty.serving.server import prepare_database

POSITIVE = ["excellent", "superb", "sturdy", "reliable", "brilliant", "perfect"]
NEGATIVE = ["broken", "flimsy", "useless", "faulty", "cracked", "awful"]


def new_domain(n: int, seed: int, shuffled: bool = False) -> list[tuple[str, str]]:
    """Kitchen-like texts the champion never saw: the label is carried by new words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append((f"the {rng.choice(['kettle', 'blender', 'toaster', 'pan'])} {i} is {word}", label))
    if shuffled:
        labels = [y for _, y in rows]
        rng.shuffle(labels)
        rows = [(t, y) for (t, _), y in zip(rows, labels)]
    return rows


def give_feedback(db_url: str, rows: list[tuple[str, str]], when: datetime | None = None) -> None:
    """Logged predictions with their true labels, as serve + POST /v1/feedback leave them."""
    prepare_database(db_url)
    when = when or datetime.now(timezone.utc)
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(predictions.insert(), [
            {"id": uuid.uuid4().hex, "created_at": when, "model_name": "tiny", "model_version": "1", "text": text,
             "text_sha256": "x", "text_chars": len(text), "label": "pos", "score": 0.5, "result": "{}",
             "latency_ms": 1.0, "true_label": label, "feedback_at": when} for text, label in rows])
    engine.dispose()


@pytest.fixture
def champion(store, tiny_run, tmp_path):
    registry = Registry(store, create=True)
    registry.register(tiny_run, "tiny")
    registry.promote("tiny", 1, reason="first")
    return registry, f"sqlite:///{tmp_path / 'log.db'}"


def overrides(store: str, db: str) -> list[str]:
    return ["--retrain.model", "tiny", "--retrain.registry", store, "--retrain.db", db, "--retrain.min_new_examples",
            "20", "--train.epochs", "4", "--train.learning_rate", "3e-3", "--train.num_threads", "2"]


def test_mcnemar_and_the_decision_rule():
    test = mcnemar_exact([True] * 10 + [False] * 10, [True] * 10 + [True] * 10)
    assert test["only_challenger_right"] == 10 and test["only_champion_right"] == 0 and test["p_value"] < 0.01
    assert test["p_value_worse"] == 1.0
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0
    worse = mcnemar_exact([True] * 10, [False] * 10)  # one-sided: a worse challenger is never "significant"
    assert worse["only_champion_right"] == 10 and worse["p_value"] == 1.0
    assert abs(mcnemar_exact([False] * 5, [True] * 5)["p_value"] - 1 / 32) < 1e-9  # all 5 discordant pairs: 2^-5
    settings = RetrainConfig(margin=0.01, significance=0.05, tolerance=0.01)
    good = {"champion_accuracy": 0.5, "challenger_accuracy": 1.0, "test": {"p_value": 0.002}}
    same = {"p_value": 0.5, "p_value_worse": 0.5}
    assert decide(good, {"champion_accuracy": 0.9, "challenger_accuracy": 0.895, "test": same}, settings)["promote"]
    forgets = decide(good, {"champion_accuracy": 0.9, "challenger_accuracy": 0.85,
                            "test": {"p_value": 0.99, "p_value_worse": 0.01}}, settings)
    assert not forgets["promote"] and "reference set" in forgets["reasons"][0]
    # a loss beyond the tolerance that noise explains (a small reference set) does not block
    noisy = decide(good, {"champion_accuracy": 0.9, "challenger_accuracy": 0.88,
                          "test": {"p_value": 0.9, "p_value_worse": 0.3}}, settings)
    assert noisy["promote"]
    lucky = decide({**good, "test": {"p_value": 0.2}}, {"champion_accuracy": 0.9, "challenger_accuracy": 0.9,
                                                      "test": same}, settings)
    assert not lucky["promote"] and "McNemar" in lucky["reasons"][0]


def test_a_challenger_that_learned_the_new_data_is_promoted(champion, store, tmp_path):
    registry, db = champion
    give_feedback(db, new_domain(160, seed=1))
    report = retrain(overrides=overrides(store, db), output=tmp_path / "round1", progress=False, log=lambda *_: None)
    new, ref = report["figures"]["new_slice"], report["figures"]["reference"]
    assert ref["challenger_accuracy"] >= ref["champion_accuracy"] - 0.01  # the original data is not forgotten
    assert report["status"] == "promoted", report["decision"]
    assert new["challenger_accuracy"] > new["champion_accuracy"] + 0.2 and new["test"]["p_value"] < 0.05
    assert report["data"]["held_out"] == 48 and report["data"]["trained_new"] == 112  # 30% held out
    assert report["data"]["replayed"] == 44  # 1 per new text asked; the champion's training split has 44 rows
    assert registry.resolve("tiny").version == 2 and registry.resolve("tiny", "challenger").version == 2
    version = registry.get("tiny", 2)
    assert version.parent_version == 1 and json.loads(version.tags["thrifty.retrain.decision"])["promote"]
    move = registry.history("tiny")[-1]
    assert (move.alias, move.previous, move.version, move.by) == ("champion", 1, 2, "thrifty retrain")
    assert (tmp_path / "round1" / "retrain.json").exists() and (tmp_path / "round1" / "reference.csv").exists()

    # the feedback is used once: a second round with no new feedback has nothing to do
    again = retrain(overrides=overrides(store, db), output=tmp_path / "round2", progress=False, log=lambda *_: None)
    assert again["status"] == "nothing to do" and again["feedback"] == 0
    assert not (tmp_path / "round2").exists() and registry.resolve("tiny").version == 2


def test_shuffled_labels_make_a_challenger_that_is_not_promoted(champion, store, tmp_path, capsys):
    registry, db = champion
    give_feedback(db, new_domain(160, seed=2, shuffled=True))
    assert main(["retrain", *overrides(store, db), "--output", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "not promoted" in out
    report = json.loads((tmp_path / "r" / "retrain.json").read_text())
    assert report["status"] == "not promoted" and report["decision"]["reasons"]
    assert registry.resolve("tiny").version == 1 and registry.resolve("tiny", "challenger").version == 2
    # the rejected round's feedback: counted again by default (since the champion), not with last_retrain
    quiet = dict(progress=False, log=lambda *_: None)
    again = retrain(overrides=overrides(store, db) + ["--retrain.min_new_examples", "100000"], **quiet)
    assert again["status"] == "nothing to do" and again["feedback"] == 160
    again = retrain(overrides=overrides(store, db) + ["--retrain.feedback_since", "last_retrain"], **quiet)
    assert again["status"] == "nothing to do" and again["feedback"] == 0


def test_nothing_to_do_and_a_second_retrain_exits_cleanly(champion, store, tmp_path, capsys):
    registry, db = champion
    assert main(["retrain", *overrides(store, db), "--output", str(tmp_path / "r")]) == 0
    assert "nothing to do: 0 new labelled texts" in capsys.readouterr().out and not (tmp_path / "r").exists()
    give_feedback(db, new_domain(40, seed=3))
    engine = make_engine(db)
    first = DatabaseLock(engine, "retrain:tiny", holder="other-host:123")
    assert first.acquire()
    assert main(["retrain", *overrides(store, db), "--output", str(tmp_path / "r")]) == 0
    assert "another retrain of tiny is running (other-host:123" in capsys.readouterr().out
    first.release()
    # a holder that died (no heartbeat for longer than stale_seconds) is taken over, by one waiter only
    with engine.begin() as connection:
        old = datetime.now(timezone.utc) - timedelta(hours=1)
        connection.execute(locks.insert().values(name="retrain:tiny", holder="dead:1", acquired_at=old, heartbeat_at=old))
    a, b = DatabaseLock(engine, "retrain:tiny", holder="a"), DatabaseLock(engine, "retrain:tiny", holder="b")
    assert a.try_acquire() and not b.try_acquire()
    assert a.current()["holder"] == "a"
    a.release()
    assert a.current() is None
    engine.dispose()


def test_bad_retrain_input_is_one_line(store, tmp_path, capsys):
    assert main(["retrain", "--registry", store]) == 2
    assert "retrain.model is not set" in capsys.readouterr().err
    assert main(["retrain", "--model", "tiny", "--retrain.margin", "-1"]) == 2
    assert "retrain.margin=-1.0 must be >= 0" in capsys.readouterr().err
    assert main(["retrain", "--model", "tiny", "--every", "soon"]) == 2
    assert "--every 'soon' is not a span" in capsys.readouterr().err
    assert main(["retrain", "--model", "tiny", "--every", "6h", "--cron"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("0 */6 * * * cd ") and "retrain --model tiny" in line and "--cron" not in line
