"""From the server's in-memory tallies (``fleet/tally.py``) to the inputs of the traffic
anomaly rules (``fleet/anomaly.py``): failed authentications per source address, and bytes
downloaded per device.

Why the download key carries a proof: the TUF repository is public (any mirror may serve it),
so a download is not authenticated on the request path, where checking a bearer credential
would cost a database read per request. The server notes who the request *says* it is (a
client certificate the TLS handshake verified, or ``X-OTAGuard-Device`` with the SHA-256 of
the bearer credential, the form the database keeps) and the scan checks the claims in one
query. A download whose claim does not hold counts against its client address, never against
the device it names, so nobody can frame a device by sending its id.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from enum import StrEnum

from otaguard.fleet.anomaly import AuthFailure, DownloadUsage
from otaguard.fleet.tally import Bucket, Key


class Proof(StrEnum):
    CERTIFICATE = "certificate"  # verified in the TLS handshake (or by a trusted proxy)
    BEARER = "bearer"  # a credential digest still to compare with the stored one
    NONE = "none"  # nothing claimed, or a claim already refused


_CERTIFICATE, _BEARER = Proof.CERTIFICATE.value, Proof.BEARER.value


def auth_key(source: str, route: str) -> Key:
    return (source, route)


def auth_failures(buckets: Sequence[Bucket]) -> list[AuthFailure]:
    """Tallied failed authentications (keys from ``auth_key``) as the burst rule reads them."""
    return [
        AuthFailure(b.key[0], b.last, b.key[1], b.events, b.first)
        for b in buckets
        if len(b.key) == 2
    ]


def download_key(proof: Proof, device_id: str, digest: str, source: str, target: str) -> Key:
    """``digest``: SHA-256 hex of the bearer credential (``Proof.BEARER``), else empty;
    ``target``: the file's content hash."""
    return (proof.value, device_id, digest, source, target)


def bearer_claims(buckets: Sequence[Bucket]) -> set[str]:
    """The device ids claimed with a bearer credential: whose stored digests the scan needs."""
    return {b.key[1] for b in buckets if len(b.key) == 5 and b.key[0] == _BEARER}


def proven(key: Key, credential_digests: Mapping[str, str]) -> bool:
    proof, device_id, digest = key[0], key[1], key[2]
    if proof == _CERTIFICATE:
        return bool(device_id)
    if proof == _BEARER:
        stored = credential_digests.get(device_id)
        return stored is not None and hmac.compare_digest(stored, digest)
    return False


def download_usage(
    buckets: Sequence[Bucket],
    credential_digests: Mapping[str, str],
    expected: Mapping[str, int],
) -> list[DownloadUsage]:
    """Per downloader, its bytes, requests and distinct files: a device whose claim holds
    (``credential_digests``: device id -> stored credential digest), else the client
    address (anonymous). ``expected``: bytes each device was assigned in the window.
    One pass, no sorting (the rule sorts what it flags)."""
    per: dict[tuple[bool, str], tuple[list[int], set[str]]] = {}
    for b in buckets:
        if len(b.key) != 5:
            continue
        who = (False, b.key[1]) if proven(b.key, credential_digests) else (True, b.key[3])
        found = per.get(who)
        if found is None:
            found = per[who] = ([0, 0], set())
        found[0][0] += b.amount
        found[0][1] += b.events
        found[1].add(b.key[4])
    return [
        DownloadUsage(
            who,
            totals[0],
            0 if anonymous else expected.get(who, 0),
            totals[1],
            len(files),
            anonymous,
        )
        for (anonymous, who), (totals, files) in per.items()
    ]
