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
from thrifty.retrain.challenger import agreement_beyond_chance, decide, mcnemar_exact, retrain
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
    gate = RetrainConfig(max_gap_increase=0.02)
    fair = {"champion_max_gap": 0.10, "challenger_max_gap": 0.11, "attribute": "gender"}
    steady = {"champion_accuracy": 0.9, "challenger_accuracy": 0.9, "test": same}
    assert decide(good, steady, gate, fair)["promote"]  # within the allowed increase
    unfair = decide(good, steady, gate, {**fair, "challenger_max_gap": 0.15})
    assert not unfair["promote"] and "largest group gap (gender) is 0.1500" in unfair["reasons"][0]


def test_agreement_beyond_chance():
    same = agreement_beyond_chance(["a", "b"] * 50, ["a", "b"] * 50)
    assert same["agreement"] == 1.0 and same["chance"] == 0.5 and same["kappa"] == 1.0 and same["p_value"] < 1e-20
    unrelated = agreement_beyond_chance(["a", "b"] * 50, ["a", "a", "b", "b"] * 25)  # half agree, as chance does
    assert unrelated["agreement"] == 0.5 and unrelated["kappa"] == 0.0 and unrelated["p_value"] > 0.4
    # a model that answers one label: agreement is that label's share, which is chance, whatever the share
    lopsided = agreement_beyond_chance(["a"] * 100, ["a"] * 90 + ["b"] * 10)
    assert lopsided["agreement"] == 0.9 and lopsided["chance"] == 0.9 and lopsided["kappa"] == 0.0
    assert lopsided["p_value"] > 0.4


def test_a_challenger_that_learned_the_new_data_is_promoted(champion, store, tmp_path):
    registry, db = champion
    give_feedback(db, new_domain(160, seed=1))
    report = retrain(overrides=overrides(store, db), output=tmp_path / "round1", progress=False, log=lambda *_: None)
    assert report["data"]["quarantined"] is None  # promoted: never quarantined, whatever the agreement
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

    # then a batch with shuffled labels: refused, and since the champion now knows this domain (its answers carry the
    # labels of a reference set from it) while these labels agree with it no better than chance, quarantined
    reference = tmp_path / "kitchen_reference.csv"
    reference.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in new_domain(60, seed=9)))
    give_feedback(db, new_domain(120, seed=5, shuffled=True))
    with_reference = overrides(store, db) + ["--retrain.reference", str(reference)]
    noisy = retrain(overrides=with_reference, output=tmp_path / "round3", progress=False, log=lambda *_: None)
    assert noisy["status"] == "not promoted" and noisy["data"]["champion_on_reference"]["p_value"] < 0.05
    assert noisy["data"]["newest_window"]["p_value"] >= 0.05 and abs(noisy["data"]["newest_window"]["kappa"]) < 0.25
    assert noisy["data"]["quarantined"]["texts"] == 120 and "quarantined" in noisy["decision"]["reasons"][-1]
    assert json.loads(registry.get("tiny", 3).tags["thrifty.retrain.quarantine"])["texts"] == 120
    # later rounds leave the window out while new true feedback counts; --retrain.quarantine_noise false takes it back
    give_feedback(db, new_domain(30, seed=4))
    quiet = dict(progress=False, log=lambda *_: None)
    high = with_reference + ["--retrain.min_new_examples", "100000"]
    later = retrain(overrides=high, **quiet)
    assert later["status"] == "nothing to do" and (later["feedback"], later["feedback_quarantined"]) == (30, 120)
    later = retrain(overrides=high + ["--retrain.quarantine_noise", "false"], **quiet)
    assert later["status"] == "nothing to do" and (later["feedback"], later["feedback_quarantined"]) == (150, 0)


def test_shuffled_labels_make_a_challenger_that_is_not_promoted(champion, store, tmp_path, capsys):
    registry, db = champion
    give_feedback(db, new_domain(160, seed=2, shuffled=True))
    assert main(["retrain", *overrides(store, db), "--output", str(tmp_path / "r"), "--no-progress",
                 "--retrain.max_gap_increase", "0.5", "--audit.attributes", "gender"]) == 0
    out = capsys.readouterr().out
    assert "not promoted" in out
    report = json.loads((tmp_path / "r" / "retrain.json").read_text())
    assert report["status"] == "not promoted" and report["decision"]["reasons"]
    fairness = report["figures"]["fairness"]  # both audited on the same sentences (gender: 24 x 20)
    assert fairness["sentences"] == 480 and 0 <= fairness["champion_max_gap"] <= 1 and fairness["attribute"] == "gender"
    assert (tmp_path / "r" / "audit-champion" / "audit.json").exists()
    assert registry.resolve("tiny").version == 1 and registry.resolve("tiny", "challenger").version == 2
    # the labels agree with the champion no better than chance, but so does everything: this tiny champion answers
    # one label on its reference set, so it proves nothing about the labels and nothing is quarantined
    window, on_reference = report["data"]["newest_window"], report["data"]["champion_on_reference"]
    assert window["texts"] == 160 and window["p_value"] >= 0.05 and on_reference["p_value"] >= 0.05
    assert report["data"]["quarantined"] is None
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
