"""The tamper-evident audit log's chain: pure functions over entries.

Each entry is hashed (SHA-256) over its canonical JSON (the OLPC canonical form TUF uses,
``securesystemslib.formats.encode_canonical``) including its sequence number and the previous
entry's hash, so editing an entry changes its hash, and deleting or reordering entries breaks
the link of the next one or the sequence. Truncating the tail is caught against a head hash
recorded elsewhere (``verify_chain(..., expected_head=...)``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from securesystemslib.formats import encode_canonical

#: the ``prev_hash`` of the first entry
GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "target", "outcome", "detail")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str  # ISO 8601 UTC
    actor: str  # "user:alice", "device:sim-0001", "anonymous", "system"
    action: str
    target: str
    outcome: str  # "ok", "denied", "failed", an HTTP status...
    detail: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> str:
        return json.dumps({**self.body(), "hash": self.hash}, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEntry:
        return cls(
            seq=int(d["seq"]),
            at=str(d["at"]),
            actor=str(d["actor"]),
            action=str(d["action"]),
            target=str(d["target"]),
            outcome=str(d["outcome"]),
            detail=dict(d.get("detail") or {}),
            prev_hash=str(d["prev_hash"]),
            hash=str(d.get("hash", "")),
        )


def _canonical_safe(value: Any) -> Any:
    """Canonical JSON has no floats: keep details to strings, ints, bools, None, lists, maps."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_safe(v) for v in value]
    return str(value)


def clean_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _canonical_safe(dict(detail))
    return result


def entry_hash(entry: AuditEntry) -> str:
    data = encode_canonical(entry.body())
    assert isinstance(data, str)
    return hashlib.sha256(data.encode()).hexdigest()


def chain(
    prev: AuditEntry | None,
    *,
    at: str,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    detail: Mapping[str, Any],
) -> AuditEntry:
    """The entry following ``prev`` (None: the first), with its hash."""
    entry = AuditEntry(
        seq=1 if prev is None else prev.seq + 1,
        at=at,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        detail=clean_detail(detail),
        prev_hash=GENESIS if prev is None else prev.hash,
    )
    return AuditEntry(**{**entry.__dict__, "hash": entry_hash(entry)})


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str


def verify_chain(
    entries: Iterable[AuditEntry], *, expected_head: str | None = None
) -> list[ChainProblem]:
    """Every break in the chain, in order (empty: intact). Entries are taken in the order
    given (storage order), which must be sequence order from 1."""
    problems: list[ChainProblem] = []
    prev_hash = GENESIS
    expected_seq = 1
    last: AuditEntry | None = None
    for e in entries:
        if e.seq != expected_seq:
            problems.append(
                ChainProblem(e.seq, f"sequence {e.seq} where {expected_seq} was expected")
            )
        if e.prev_hash != prev_hash:
            problems.append(ChainProblem(e.seq, "does not link to the previous entry"))
        if entry_hash(e) != e.hash:
            problems.append(ChainProblem(e.seq, "content does not match its hash (edited)"))
        prev_hash = e.hash
        expected_seq = e.seq + 1
        last = e
    if expected_head is not None and (last is None or last.hash != expected_head):
        problems.append(
            ChainProblem(
                last.seq if last else 0,
                "last entry is not the recorded head (entries removed from the end?)",
            )
        )
    return problems
