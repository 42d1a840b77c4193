"""The TUF repository (``/tuf``: public, everything in it is signed, any mirror may serve it)
and what makers send to it (``/api/v1/repository``: root, targets and delegated roles;
``/api/v1/artifacts``: the files the targets name). The publishing rules themselves are
``repo/online.py`` and ``repo/publish.py``; this module only moves bytes."""

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Header, Request
from fastapi import Path as FastApiPath
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from otaguard.errors import NotFoundError, PayloadTooLargeError, RepositoryError, StoreError
from otaguard.repo.publish import publish_release
from otaguard.server import downloads, schemas, transfers
from otaguard.server.context import MAX_METADATA_BYTES, ServerContext
from otaguard.server.ranges import blob_response, bytes_response, etag_matches
from otaguard.server.routes.params import ERROR_RESPONSES, Operator
from otaguard.server.state import Ctx, Metrics
from otaguard.store.blobs import check_digest

_METADATA_NAME = re.compile(
    r"^(\d+\.)?(root|targets|snapshot|timestamp)\.json$|^(\d+\.)?[A-Za-z0-9._-]+\.json$"
)
_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The whole file"},
    206: {"description": "One byte range (Content-Range)"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    404: {"model": schemas.ErrorOut},
    416: {"description": "Range not satisfiable (Content-Range: bytes */size)"},
}
#: request paths whose bodies are streamed with their own limits (``BodyLimit`` exempts them)
STREAMED_BODIES = ("/api/v1/artifacts/", "/api/v1/repository/")

tuf_router = APIRouter(prefix="/tuf", tags=["repository"])
router = APIRouter(prefix="/api/v1", tags=["management"], responses=ERROR_RESPONSES)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _blocking_chunks(request: Request) -> Iterator[bytes]:
    """The request body as a blocking iterator, for a worker thread of the event loop."""
    stream = request.stream()
    while True:
        try:
            chunk = anyio.from_thread.run(stream.__anext__)
        except StopAsyncIteration:
            return
        if chunk:
            yield chunk


# -- TUF repository ----------------------------------------------------------------------------
@tuf_router.get("/metadata/{name}", responses=_DOWNLOAD_RESPONSES)
def metadata(
    name: str,
    ctx: Ctx,
    if_none_match: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """Signed TUF metadata (with Range, ETag and 304 on If-None-Match)."""
    if not _METADATA_NAME.match(name):
        raise NotFoundError(f"no metadata {name}")
    data = ctx.repo.store.get(name)
    if data is None:
        raise NotFoundError(f"no metadata {name}")
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    cache = "no-cache" if name in ("timestamp.json", "root.json") else "public, max-age=300"
    return bytes_response(
        data, range_, {"ETag": etag, "Cache-Control": cache}, media_type="application/json"
    )


@tuf_router.get("/targets/{path:path}", responses=_DOWNLOAD_RESPONSES)
def target(
    path: str,
    request: Request,
    ctx: Ctx,
    metrics: Metrics,
    if_none_match: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """Consistent-snapshot target: ``dir/<sha256>.<name>``, served by hash (with Range)."""
    base = path.rsplit("/", 1)[-1]
    digest = base.split(".", 1)[0]
    try:
        check_digest(digest)
    except StoreError as exc:
        raise NotFoundError(f"no target {path}") from exc
    if not ctx.blobs.exists(digest):
        raise NotFoundError(f"no target {path}")
    etag = f'"{digest}"'
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    response = blob_response(
        ctx.blobs,
        digest,
        range_,
        {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"},
    )
    served = int(response.headers.get("content-length", 0))
    metrics.bytes_served.inc(served)
    transfers.note_download(ctx, request.scope, path, digest, served)  # the fleet's bytes view
    if response.status_code in (200, 206):  # per downloader, for the volume alert
        downloads.note_download(ctx, request.scope, digest, served)
    return response


# -- what makers publish -----------------------------------------------------------------------
@router.get("/repository/online-keys", response_model=schemas.OnlineKeys)
def online_keys(_user: Operator, ctx: Ctx) -> schemas.OnlineKeys:
    def key(signer: Any) -> dict[str, Any]:
        pub = signer.public_key
        return {"keyid": pub.keyid, **pub.to_dict()}

    return schemas.OnlineKeys(
        snapshot=key(ctx.repo.snapshot_signer),
        timestamp=key(ctx.repo.timestamp_signer),
        director=key(ctx.director),
    )


@router.put("/repository/root", response_model=schemas.RootOut)
async def put_root(request: Request, _user: Operator, ctx: Ctx) -> schemas.RootOut:
    data = await _read_body(request, MAX_METADATA_BYTES)
    return schemas.RootOut(version=await run_in_threadpool(ctx.repo.install_root, data))


@router.put("/repository/targets", response_model=schemas.PublishOut)
async def put_targets(request: Request, _user: Operator, ctx: Ctx) -> schemas.PublishOut:
    data = await _read_body(request, MAX_METADATA_BYTES)
    return await run_in_threadpool(_publish, ctx, {"targets": data})


@router.put("/repository/delegations", response_model=schemas.PublishOut)
async def put_delegations(request: Request, _user: Operator, ctx: Ctx) -> schemas.PublishOut:
    """Several targets roles (delegated, and top-level ``targets`` if it changed) at once,
    under one new snapshot: ``{"roles": {name: metadata}}``, delegators first."""
    try:
        body = json.loads(await _read_body(request, MAX_METADATA_BYTES))
        roles = body["roles"]
        if not isinstance(roles, dict) or not roles:
            raise TypeError("roles must be a non-empty object")
        data = {str(k): json.dumps(v).encode() for k, v in roles.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise RepositoryError(f'expected {{"roles": {{name: metadata}}}}: {exc}') from exc
    return await run_in_threadpool(_publish, ctx, data)


@router.put("/repository/delegations/{role}", response_model=schemas.PublishOut)
async def put_delegation(
    role: str, request: Request, _user: Operator, ctx: Ctx
) -> schemas.PublishOut:
    data = await _read_body(request, MAX_METADATA_BYTES)
    return await run_in_threadpool(_publish, ctx, {role: data})


def _publish(ctx: ServerContext, roles: dict[str, bytes]) -> schemas.PublishOut:
    result = publish_release(ctx.repo, roles, artifacts=ctx.blobs, catalog=ctx.store)
    return schemas.PublishOut(
        targets_version=result.targets_version,
        snapshot_version=result.snapshot_version,
        timestamp_version=result.timestamp_version,
        added=list(result.added),
        roles=result.roles,
    )


@router.put("/artifacts/{sha256}", response_model=schemas.ArtifactOut)
async def put_artifact(
    sha256: Annotated[str, FastApiPath(pattern=r"^[0-9a-f]{64}$")],
    request: Request,
    _user: Operator,
    ctx: Ctx,
) -> schemas.ArtifactOut:
    """Upload an artifact (streamed; its sha256 must match the path)."""
    check_digest(sha256)
    limit = ctx.settings.max_artifact_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"artifact larger than {limit} bytes")
    # Streamed into the blob store as it arrives (never held in memory); the store
    # refuses it past the limit or on a hash mismatch and keeps nothing.
    digest, size = await run_in_threadpool(
        ctx.blobs.put_stream, _blocking_chunks(request), sha256, limit
    )
    return schemas.ArtifactOut(sha256=digest, length=size)
