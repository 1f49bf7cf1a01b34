"""The prediction log: migrations, batched writes, feedback, text hashing, and a database that goes away."""

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from thrifty.serving.predlog import VERSION_TABLE, PredictionLog, database_url, make_engine, migrate, now_utc, text_hash


def rows(log, n, start=0):
    return [log.prediction_row(prediction_id=f"id{i:05d}", created_at=now_utc(), model_name="m", model_version="v1",
                               text=f"text number {i}", result={"label": "pos", "score": 0.9}, latency_ms=3.0)
            for i in range(start, start + n)]


def test_a_path_is_sqlite_and_postgresql_urls_get_the_psycopg_driver(tmp_path):
    assert database_url(str(tmp_path / "p.db")) == f"sqlite:///{tmp_path / 'p.db'}"
    assert database_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_create_the_schema_once_and_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(str(tmp_path / "serve" / "predictions.db"))
    assert migrate(engine) == migrate(engine)  # a second run changes nothing
    inspector = sa.inspect(engine)
    assert {"predictions", VERSION_TABLE} <= set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("predictions")}
    assert {"id", "created_at", "model_version", "text", "text_sha256", "label", "result", "latency_ms",
            "true_label"} <= columns
    with engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_rows_are_written_in_the_background_and_feedback_attaches_to_them(tmp_path):
    log = PredictionLog(str(tmp_path / "log.db"))
    log.start()
    log.record(rows(log, 1200))
    assert log.flush(timeout=30)
    assert log.count() == 1200 and log.logged == 1200 and log.unlogged == 0
    assert log.attach_feedback("id00007", "neg")
    assert not log.attach_feedback("no-such-id", "neg")
    with log.engine.connect() as connection:
        label, text = connection.execute(sa.text("SELECT true_label, text FROM predictions WHERE id='id00007'")).one()
    assert (label, text) == ("neg", "text number 7")
    log.close()


def test_hash_mode_stores_no_text(tmp_path):
    log = PredictionLog(str(tmp_path / "log.db"), store_text=False)
    log.start()
    log.record(rows(log, 3))
    assert log.flush(timeout=10)
    with log.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT text, text_sha256, text_chars FROM predictions ORDER BY id")).all()
    assert stored[1] == (None, text_hash("text number 1"), len("text number 1"))
    log.close()


def test_a_database_that_is_down_fills_only_the_bounded_buffer_and_the_rest_is_counted(tmp_path, monkeypatch):
    log = PredictionLog(str(tmp_path / "log.db"), buffer_rows=100, batch_rows=10)
    log.start()
    real_insert, down = log._insert, {"on": True}

    def insert(batch):
        if down["on"]:
            raise OperationalError("INSERT", {}, Exception("database is down"))
        real_insert(batch)

    monkeypatch.setattr(log, "_insert", insert)
    started = time.perf_counter()
    log.record(rows(log, 300))  # never blocks: the buffer takes 100, the writer holds a batch of 10 at most
    assert time.perf_counter() - started < 0.5
    time.sleep(0.5)
    assert log.write_errors > 0 and "database is down" in log.last_error
    assert 190 <= log.unlogged <= 200  # what did not fit
    down["on"] = False  # the database is back: everything held is written
    assert log.flush(timeout=30)
    assert log.logged + log.unlogged == 300
    assert log.count() == log.logged
    log.close()


def test_shutdown_with_the_database_away_counts_what_is_left(tmp_path, monkeypatch):
    log = PredictionLog(str(tmp_path / "log.db"), buffer_rows=1000, batch_rows=50)
    log.start()
    monkeypatch.setattr(log, "_insert", lambda batch: (_ for _ in ()).throw(OperationalError("INSERT", {}, Exception("down"))))
    log.record(rows(log, 200))
    started = time.perf_counter()
    log.close(timeout=0.5)
    assert time.perf_counter() - started < 5
    assert log.logged == 0 and log.unlogged == 200


def test_postgresql_log_migrates_writes_and_takes_feedback(postgres):
    log = PredictionLog(postgres.url)
    log.start()
    before = log.count()  # the cluster is shared by the session's tests
    log.record(rows(log, 50, start=90000))
    assert log.flush(timeout=30)
    assert log.count() == before + 50
    assert log.attach_feedback("id90003", "pos")
    assert migrate(log.engine) == "0002"  # the prediction log and the retrain lock
    log.close()


@pytest.mark.parametrize("mode", ["text", "hash"])
def test_row_fields_follow_the_result(tmp_path, mode):
    log = PredictionLog(str(tmp_path / "log.db"), store_text=mode == "text")
    row = log.prediction_row(prediction_id="x", created_at=now_utc(), model_name="m", model_version="v",
                             text="é", result={"entities": []}, latency_ms=1.0)
    assert row["label"] is None and row["text_chars"] == 1 and row["result"] == '{"entities": []}'
    assert row["text"] == ("é" if mode == "text" else None)
    log.engine.dispose()
