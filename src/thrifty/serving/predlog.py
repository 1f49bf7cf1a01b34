"""The prediction log: every served prediction in a database — SQLite by default, PostgreSQL given a URL.

Writes never sit on the request path. The server hands each answered prediction to a bounded in-memory buffer;
one writer thread inserts them in batches. A database that is slow or down only fills the buffer (the writer
retries with back-off); once the buffer is full, further predictions are dropped from the log and counted
(`unlogged`, exported in /metrics), so a prediction is never failed or slowed by its log. Feedback (the true label
of a logged prediction) is an UPDATE of its row.

The schema belongs to Alembic migrations in `serving/migrations/` (`thrifty serve` upgrades the database at start;
`thrifty migrate --db URL` does only that), never to `create_all`: a later thrifty can change the table and
bring an existing log along.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from thrifty.databases import database_url  # noqa: F401  (re-exported: callers import it from here)
from thrifty.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "thrifty_schema_version"  # Alembic's bookkeeping, named so it never meets an application's own

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # the prediction id returned to the client
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),  # UTC
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=True),  # null when serve.log_text is "hash"
    sa.Column("text_sha256", sa.String(64), nullable=False),
    sa.Column("text_chars", sa.Integer, nullable=False),
    sa.Column("label", sa.String(200), nullable=True),  # classification: the predicted label
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("result", sa.Text, nullable=False),  # the full answer as JSON (probabilities, entities)
    sa.Column("latency_ms", sa.Float, nullable=False),  # the request's time in the server
    sa.Column("true_label", sa.String(200), nullable=True),  # POST /v1/feedback
    sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
)


def make_engine(url: str) -> sa.Engine:
    """An engine that fails fast when the database is away (a few seconds, not TCP's minutes)."""
    url = database_url(url)
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 5})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):  # WAL: readers (thrifty monitor) never block the writer
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_timeout=3, connect_args=connect_args)
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(f"cannot use database URL {url.split('@')[-1]!r}: {exc}; give a path (SQLite) or "
                          "postgresql://user:password@host:port/database") from None


def migrate(engine: sa.Engine) -> str:
    """Bring the database's schema to this thrifty's newest migration; returns that revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A time read back from the database, made aware: SQLite returns naive datetimes for timezone=True columns."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class PredictionLog:
    """A bounded buffer and one writer thread in front of the `predictions` table."""

    def __init__(self, url: str, *, buffer_rows: int = 10000, batch_rows: int = 500, store_text: bool = True) -> None:
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        self.store_text = store_text
        self.batch_rows = batch_rows
        self._buffer: queue.Queue = queue.Queue(maxsize=buffer_rows)
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.accepted = 0  # rows taken into the buffer
        self.logged = 0  # rows written to the database
        self.unlogged = 0  # rows lost: the buffer was full, or the database stayed away at shutdown
        self.write_errors = 0  # failed attempts to write a batch (each retried)
        self.last_error: Optional[str] = None
        self._given_up = 0  # accepted rows lost at shutdown (so flush() knows they will never be written)
        self._flush_seconds = 10.0  # set by close(): how long the writer keeps trying once stopping

    # ---- lifecycle
    def start(self, run_migrations: bool = True) -> None:
        if run_migrations:
            migrate(self.engine)
        self._thread = threading.Thread(target=self._write_loop, name="thrifty-prediction-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (for up to `timeout` seconds), count the rest as unlogged, release the database."""
        self._flush_seconds = timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
        lost = 0
        while True:
            try:
                self._buffer.get_nowait()
                lost += 1
            except queue.Empty:
                break
        with self._lock:
            self.unlogged += lost
            self._given_up += lost
            self._done.notify_all()
        self.engine.dispose()

    # ---- the request side: never blocks
    def record(self, rows: list[dict[str, Any]]) -> None:
        """Queue answered predictions (`prediction_row` dicts); those that do not fit are counted as unlogged."""
        dropped = 0
        for row in rows:
            try:
                self._buffer.put_nowait(row)
            except queue.Full:
                dropped += 1
        with self._lock:
            self.accepted += len(rows) - dropped
            self.unlogged += dropped

    def prediction_row(self, *, prediction_id: str, created_at: datetime, model_name: str, model_version: str,
                       text: str, result: dict[str, Any], latency_ms: float) -> dict[str, Any]:
        return {"id": prediction_id, "created_at": created_at, "model_name": model_name, "model_version": model_version,
                "text": text if self.store_text else None, "text_sha256": text_hash(text), "text_chars": len(text),
                "label": result.get("label"), "score": result.get("score"),
                "result": json.dumps(result, ensure_ascii=False), "latency_ms": latency_ms,
                "true_label": None, "feedback_at": None}

    @property
    def buffered(self) -> int:
        return self._buffer.qsize()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row accepted so far is written (or lost); False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self.accepted
            while self.logged + self._given_up < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._done.wait(left)
        return True

    # ---- feedback and reads
    def attach_feedback(self, prediction_id: str, label: str) -> bool:
        """Record the true label of a logged prediction; False if no prediction has this id."""
        self.flush(timeout=2.0)  # a prediction answered a moment ago may still be in the buffer
        with self.engine.begin() as connection:
            result = connection.execute(
                predictions.update().where(predictions.c.id == prediction_id)
                .values(true_label=label, feedback_at=now_utc()))
        return result.rowcount > 0

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one()

    # ---- the writer thread
    def _take_batch(self) -> list[dict[str, Any]]:
        try:
            batch = [self._buffer.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(batch) < self.batch_rows:
            try:
                batch.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        return batch

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(predictions.insert(), batch)
        except IntegrityError:
            # A retry after a commit whose answer was lost: write the rows one by one, skipping those already there.
            for row in batch:
                try:
                    with self.engine.begin() as connection:
                        connection.execute(predictions.insert(), [row])
                except IntegrityError:
                    pass

    def _write_loop(self) -> None:
        backoff = 0.1
        batch: list[dict[str, Any]] = []
        stop_deadline: Optional[float] = None
        while True:
            if self._stop.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + self._flush_seconds
            if not batch:
                batch = self._take_batch()
                if not batch:
                    if self._stop.is_set():
                        return
                    continue
            try:
                self._insert(batch)
            except SQLAlchemyError as exc:  # down or slow: keep the batch, wait, try again; the buffer bounds memory
                with self._lock:
                    self.write_errors += 1
                    self.last_error = str(exc).splitlines()[0][:300]
                if stop_deadline is not None and time.monotonic() >= stop_deadline:  # shutting down: give up
                    with self._lock:
                        self.unlogged += len(batch)
                        self._given_up += len(batch)
                        self._done.notify_all()
                    return
                if stop_deadline is None:
                    self._stop.wait(backoff)  # a stop request ends the wait early
                else:
                    time.sleep(min(backoff, 0.5))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            with self._lock:
                self.logged += len(batch)
                self._done.notify_all()
            batch = []
