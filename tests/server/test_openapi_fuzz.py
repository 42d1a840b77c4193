"""schemathesis against the app's own OpenAPI document (ASGI, in process), bounded: no 5xx, no
undocumented status code, no response that violates its documented schema or content type.

Requests carry an operator token on the management API and a real device credential on the
device API, so the fuzzing reaches past authentication."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import checks
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.device_key import public_key_dict
from otaguard.director.manifest import check_public_key
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings

DEVICE = "fuzz-device"
DEVICE_CREDENTIAL = "fuzz-device-credential-0123456789"
RELEASE = "sim-board/firmware-2.0.0.img"
MAX_EXAMPLES = 30  # per operation: the whole run stays well under a minute on 2 cores

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerContext, FastAPI]]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    ctx = ServerContext.open(ServerSettings(data_dir=data / "server", port=0))
    key = check_public_key(public_key_dict(CryptoSigner.generate_ed25519()))
    ctx.store.register_device(
        DEVICE, "sim-board", DEVICE_CREDENTIAL, ["fuzz", "canary"], manifest_key=key
    )
    # The release the document's example names, so deployments can also be created.
    ctx.store.upsert_release(
        RELEASE,
        version="2.0.0",
        hardware=["sim-board"],
        security_version=0,
        sha256="0" * 64,
        length=1,
        custom={},
    )
    try:
        yield ctx, create_app(ctx)
    finally:
        ctx.close()


# The document does not depend on server state: build it once at import (no I/O, the context
# is only read by the route functions), and send each case to the fixture's app.
schema = schemathesis.openapi.from_dict(create_app(cast(ServerContext, None)).openapi())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_openapi_document(
    case: Any, fuzz_world: tuple[ServerContext, FastAPI]
) -> None:
    ctx, app = fuzz_world
    if case.path.startswith("/device/"):
        headers = {"Authorization": f"Bearer {DEVICE_CREDENTIAL}", "X-OTAGuard-Device": DEVICE}
    else:
        headers = {"Authorization": f"Bearer {ctx.admin_token}"}
    case.call_and_validate(headers=headers, checks=CHECKS, app=app)
