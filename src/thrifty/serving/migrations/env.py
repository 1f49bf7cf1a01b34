"""Alembic's entry point for the prediction log: runs on the connection thrifty hands over (never an alembic.ini)."""

from alembic import context

from thrifty.serving.predlog import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - thrifty always passes its connection
    raise RuntimeError("run the prediction log's migrations through thrifty: thrifty migrate --db URL")
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
