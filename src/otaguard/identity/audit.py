"""The tamper-evident audit log's chain: pure functions over entries.

Each entry is hashed (SHA-256) over its canonical JSON (the OLPC canonical form TUF uses,
``securesystemslib.formats.encode_canonical``) including its sequence number and the previous
entry's hash, so editing an entry changes its hash, and deleting or reordering entries breaks
the link of the next one or the sequence. Truncating the tail is caught against a head hash
recorded elsewhere (``verify_chain(..., expected_head=...)``).

A hash chain alone is no anchor: whoever can write the table can rewrite an entry and
recompute every hash after it. So each entry also carries a MAC (HMAC-SHA256 over its hash)
under a key kept outside the database (a 0600 file on the server host, ``audit_mac_key``):
a database administrator without that file cannot produce entries that verify.
"""

from __future__ import annotations

import hashlib
import hmac
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
    mac: str = ""  # HMAC-SHA256(key, hash); "" when written without a key

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
        return json.dumps({**self.body(), "hash": self.hash, "mac": self.mac}, sort_keys=True)

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
            mac=str(d.get("mac") or ""),
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


def entry_mac(key: bytes, entry_hash_hex: str) -> str:
    return hmac.new(key, entry_hash_hex.encode(), hashlib.sha256).hexdigest()


def chain(
    prev: AuditEntry | None,
    *,
    key: bytes | None = None,
    at: str,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    detail: Mapping[str, Any],
) -> AuditEntry:
    """The entry following ``prev`` (None: the first), with its hash (and its MAC under
    ``key``)."""
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
    digest = entry_hash(entry)
    mac = entry_mac(key, digest) if key else ""
    return AuditEntry(**{**entry.__dict__, "hash": digest, "mac": mac})


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str


def _entry_problems(
    e: AuditEntry, prev_hash: str, expected_seq: int, key: bytes | None, macs_started: bool
) -> list[ChainProblem]:
    problems: list[ChainProblem] = []
    if e.seq != expected_seq:
        problems.append(ChainProblem(e.seq, f"sequence {e.seq} where {expected_seq} was expected"))
    if e.prev_hash != prev_hash:
        problems.append(
            ChainProblem(e.seq, "link broken: does not link to the previous entry's hash")
        )
    if entry_hash(e) != e.hash:
        problems.append(ChainProblem(e.seq, "content changed: does not match its hash (edited)"))
    elif key is not None and e.mac and not hmac.compare_digest(e.mac, entry_mac(key, e.hash)):
        problems.append(
            ChainProblem(e.seq, "MAC wrong: rewritten without the MAC key (hash recomputed)")
        )
    elif key is not None and not e.mac and macs_started:
        problems.append(ChainProblem(e.seq, "MAC missing after MAC-protected entries"))
    return problems


def _head_problem(entries: list[AuditEntry], expected_head: str) -> ChainProblem | None:
    last = entries[-1] if entries else None
    if last is not None and last.hash == expected_head:
        return None
    if last is None:
        return ChainProblem(0, "log is empty: the recorded head's entries were removed")
    at = next((e.seq for e in entries if e.hash == expected_head), None)
    if at is not None:
        return ChainProblem(
            last.seq,
            f"the recorded head is entry {at}: {last.seq - at} entries were appended after it",
        )
    return ChainProblem(
        last.seq,
        "the recorded head is not in the chain: entries up to it were rewritten, or entries "
        "were removed from the end",
    )


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    expected_head: str | None = None,
    key: bytes | None = None,
) -> list[ChainProblem]:
    """Every break in the chain, in order (empty: intact). Entries are taken in the order
    given (storage order), which must be sequence order from 1. With ``key``, every entry
    from the first one with a MAC on must carry a MAC that verifies (entries before it were
    written before the server had a key)."""
    problems: list[ChainProblem] = []
    prev_hash = GENESIS
    expected_seq = 1
    macs_started = False
    seen: list[AuditEntry] = []
    for e in entries:
        problems += _entry_problems(e, prev_hash, expected_seq, key, macs_started)
        macs_started = macs_started or bool(e.mac)
        prev_hash = e.hash
        expected_seq = e.seq + 1
        seen.append(e)
    if expected_head is not None:
        head = _head_problem(seen, expected_head)
        if head is not None:
            problems.append(head)
    return problems
