"""Database URLs as users type them: the prediction log (serving/) and a shared hyperparameter study (tuning/).

A path means SQLite; `postgresql://` gets the psycopg 3 driver (SQLAlchemy's default for that scheme is
psycopg2, which thrifty does not install). `shown_url` is the same URL fit to print, its password masked.
"""

from __future__ import annotations

from pathlib import Path


def database_url(value: str) -> str:
    """A SQLAlchemy URL from what a user types: a path means SQLite; postgresql:// means the psycopg 3 driver."""
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    if value.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


def shown_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: print it as given, it holds no parsed password
        return url
