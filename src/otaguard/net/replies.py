"""Reading a server's JSON reply at the client's edge, refusing what is not the expected shape.

Every client-side caller parses replies into typed values before using them (the agent's
``agent/replies.py``, enrollment and renewal in ``identity/enroll.py``); the shared first step,
and the typed certificate answer both enrollment and renewal get, live here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from otaguard.errors import ReplyError


def parse_json_object(body: bytes | str, what: str) -> dict[str, Any]:
    """The JSON object ``body`` holds.

    Raises:
        ReplyError: ``body`` is not JSON, or not a JSON object.
    """
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReplyError(f"{what}: the reply is not JSON") from exc
    if not isinstance(data, dict):
        raise ReplyError(f"{what}: the reply is not a JSON object")
    return data


@dataclass(frozen=True)
class CertificateReply:
    """``/device/v1/enroll`` and ``/device/v1/renew``: the issued chain, PEM, leaf first."""

    certificate: str


def parse_certificate_reply(body: bytes | str, what: str) -> CertificateReply:
    """Parse an enrollment or renewal answer.

    Raises:
        ReplyError: not a JSON object, or no non-empty ``certificate`` string in it.
    """
    data = parse_json_object(body, what)
    cert = data.get("certificate")
    if not isinstance(cert, str) or not cert:
        raise ReplyError(f"{what}: the reply has no certificate")
    return CertificateReply(cert)
