"""Alembic's entry point for the handoff database; clinic_core/migrate.py runs it."""
from alembic import context

from clinic_core.storage import metadata

# clinic_core/migrate.py passes the connection it holds (inside its lock on PostgreSQL).
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
