"""The audit log's rows: append an entry chained to the last, read the chain back.

Why a module of its own: appends must be serialized across server processes (each entry
hashes the one before it, ``identity/audit.py``), which takes a lock of its own on
PostgreSQL (SQLite's write lock already serializes), and reading is batched so a long log
never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, text

from otaguard.identity import audit as chain
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.identity_models import AuditRecord

_AUDIT_COLUMNS = (*chain.FIELDS, "prev_hash", "hash", "mac")
#: pg_advisory_xact_lock key held while appending to the audit log
AUDIT_LOCK = 0x07A6_A0D1


def _entry(r: AuditRecord) -> chain.AuditEntry:
    return chain.AuditEntry(
        seq=r.seq,
        at=r.at,
        actor=r.actor,
        action=r.action,
        target=r.target,
        outcome=r.outcome,
        detail=dict(r.detail or {}),
        prev_hash=r.prev_hash,
        hash=r.hash,
        mac=r.mac or "",
    )


class AuditLog:
    """The hash-chained audit log on one ``Database``; entries carry a MAC under ``mac_key``
    (kept outside the database) when given."""

    def __init__(self, db: Database, mac_key: bytes | None = None) -> None:
        self.db = db
        self.mac_key = mac_key

    def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> chain.AuditEntry:
        """Append one entry, chained to the last (writers serialized by a lock)."""
        with self.db.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
            last = s.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()
            entry = chain.chain(
                _entry(last) if last else None,
                key=self.mac_key,
                at=utcnow().isoformat(),
                actor=actor[:200],
                action=action[:100],
                target=target[:300],
                outcome=outcome[:40],
                detail=detail or {},
            )
            s.add(AuditRecord(**{k: getattr(entry, k) for k in _AUDIT_COLUMNS}))
            return entry

    def audit_entries(self, *, batch: int = 1000) -> Iterator[chain.AuditEntry]:
        """Every entry in storage order (by sequence), read in batches."""
        after = 0
        while True:
            with self.db.session(write=False) as s:
                rows = list(
                    s.scalars(
                        select(AuditRecord)
                        .where(AuditRecord.seq > after)
                        .order_by(AuditRecord.seq)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            for r in rows:
                yield _entry(r)
            after = rows[-1].seq
