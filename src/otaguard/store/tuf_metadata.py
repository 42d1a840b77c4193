"""The published TUF metadata files as database rows (``SqlMetadataStore``).

Why: every server process serves the same repository, so the online roles' metadata
(``timestamp.json``, ``snapshot.json``, versioned targets...) lives in the shared database
rather than in one process's files; ``repo/`` reads and writes it through the
``MetadataStore`` interface this class implements.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from otaguard.errors import ConflictError
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.models import TufMetadata


class SqlMetadataStore:
    """``MetadataStore`` over the ``tuf_metadata`` table, shared by every server process."""

    def __init__(self, store: Database) -> None:
        self.store = store

    def names(self) -> list[str]:
        with self.store.session(write=False) as s:
            return list(s.scalars(select(TufMetadata.name).order_by(TufMetadata.name)))

    def get(self, name: str) -> bytes | None:
        with self.store.session(write=False) as s:
            row = s.get(TufMetadata, name)
            return None if row is None else bytes(row.data)

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        try:
            with self.store.session() as s:
                row = s.get(TufMetadata, name)
                if row is not None:
                    if not replace:
                        raise ConflictError(f"metadata {name} already exists")
                    row.data = data
                    row.updated_at = utcnow()
                else:
                    s.add(TufMetadata(name=name, data=data))
        except IntegrityError as exc:
            raise ConflictError(f"metadata {name} was written concurrently") from exc
