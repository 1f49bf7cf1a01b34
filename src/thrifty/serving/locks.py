"""A named lock in the prediction log's database: one holder at a time, across processes and machines.

`DatabaseLock(engine, "retrain:NAME")` inserts a row keyed by the name; the primary key makes the insert the atomic
test-and-set on SQLite and PostgreSQL alike. The holder refreshes `heartbeat_at` from a thread; a lock whose heartbeat
is older than `stale_seconds` belongs to a process that died (kill -9, a lost machine) and is taken over with a
compare-and-set on that old heartbeat, so two waiters cannot both take it. Released by deleting the row (only its own).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from thrifty.serving.predlog import as_utc, now_utc

metadata = sa.MetaData()
locks = sa.Table(
    "thrifty_locks", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)


class DatabaseLock:
    def __init__(self, engine: sa.Engine, name: str, *, stale_seconds: float = 120.0,
                 heartbeat_seconds: float = 15.0, holder: Optional[str] = None) -> None:
        self.engine, self.name = engine, name
        self.stale_seconds, self.heartbeat_seconds = stale_seconds, heartbeat_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None

    def current(self) -> Optional[dict]:
        """The row of whoever holds it now (holder, acquired_at, heartbeat_at), or None."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(locks).where(locks.c.name == self.name)).first()
        return dict(row._mapping) if row is not None else None

    def _insert(self, now: datetime) -> bool:
        try:
            with self.engine.begin() as connection:
                connection.execute(locks.insert().values(name=self.name, holder=self.holder, acquired_at=now,
                                                         heartbeat_at=now))
            return True
        except IntegrityError:
            return False

    def try_acquire(self) -> bool:
        now = now_utc()
        if not self._insert(now):
            held = self.current()
            if held is None:  # released between our insert and our look
                if not self._insert(now):
                    return False
            elif (now - as_utc(held["heartbeat_at"])).total_seconds() <= self.stale_seconds:
                return False
            else:
                with self.engine.begin() as connection:  # a dead holder: take over, unless another waiter just did
                    taken = connection.execute(locks.update().where(locks.c.name == self.name)
                                               .where(locks.c.heartbeat_at == held["heartbeat_at"])
                                               .values(holder=self.holder, acquired_at=now, heartbeat_at=now)).rowcount
                if not taken:
                    return False
        self._start_heartbeat()
        return True

    def acquire(self, wait_seconds: float = 0.0, poll_seconds: float = 2.0) -> bool:
        """True once held; False if another holder kept it for `wait_seconds`."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if self.try_acquire():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_seconds):
                try:
                    with self.engine.begin() as connection:
                        connection.execute(locks.update().where(locks.c.name == self.name)
                                           .where(locks.c.holder == self.holder).values(heartbeat_at=now_utc()))
                except sa.exc.SQLAlchemyError:
                    pass  # the database is away for a moment; a stale lock needs stale_seconds of silence

        self._beat = threading.Thread(target=beat, name="thrifty-lock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
            self._beat = None
        with self.engine.begin() as connection:
            connection.execute(locks.delete().where(locks.c.name == self.name).where(locks.c.holder == self.holder))
