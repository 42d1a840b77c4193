"""Alembic environment: migrations run on a connection handed in by ``Store.migrate``
(``store/engine.py:migrate``).

``alembic`` on the command line is not needed: ``otaguard server`` upgrades the database to
the newest revision on start, under a lock, so several server processes may start at once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from otaguard.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("otaguard migrations run through otaguard.store.engine.migrate")
_run(connection)
