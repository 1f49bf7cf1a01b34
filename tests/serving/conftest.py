"""Serving fixtures: a real PostgreSQL cluster started for the session (the model: tests/conftest.py tiny_run)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def postgres():
    from tests.serving.postgres import PostgresCluster

    cluster = PostgresCluster().init()
    cluster.start()
    yield cluster
    cluster.remove()
