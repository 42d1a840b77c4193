"""Who downloads what from ``/tuf/targets``: one tally entry per served response, for the
download-volume alert (``fleet/traffic.py`` says why a claim is checked later, not here).

Cheap on purpose: the route is public and may serve large files to many devices, so this adds
no database read and no audit row, only a certificate lookup already cached per connection
(``server/device_identity.py``), one SHA-256 of a bearer credential when one is sent, and a
dictionary update under a lock.
"""

from __future__ import annotations

import datetime as dt
import sys

from starlette.types import Scope

from otaguard.errors import AuthError
from otaguard.fleet.traffic import Proof, download_key
from otaguard.server.auth import bearer_token
from otaguard.server.context import ServerContext
from otaguard.server.device_identity import certificate_device, scope_header
from otaguard.server.refusals import scope_client
from otaguard.store.credentials import secret_hash

#: the longest device id kept from a header (the column's size)
MAX_DEVICE_ID = 128


def note_download(ctx: ServerContext, scope: Scope, target_digest: str, size: int) -> None:
    """Count ``size`` bytes of the file ``target_digest`` served to this request's client."""
    source = scope_client(scope)
    claimed = (scope_header(scope, "x-otaguard-device") or "")[:MAX_DEVICE_ID]
    proof, digest = Proof.NONE, ""
    try:
        who = certificate_device(ctx, scope)
    except AuthError:  # revoked, expired or foreign: counts against the address
        who, claimed = None, ""
    if who is not None:
        proof, claimed = Proof.CERTIFICATE, who.device_id
    else:
        token = bearer_token(scope_header(scope, "authorization"))
        if token is not None and claimed:
            proof, digest = Proof.BEARER, secret_hash(token)
    key = download_key(proof, claimed, digest, source, sys.intern(target_digest))  # few files
    ctx.downloads.add(key, dt.datetime.now(dt.UTC), size)
