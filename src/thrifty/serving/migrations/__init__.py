"""Alembic migrations of the prediction log (`thrifty migrate --db URL`; `thrifty serve` runs them at start)."""
