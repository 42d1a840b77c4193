"""The ASGI application: device API, management API, TUF repository, metrics."""

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from otaguard import __version__
from otaguard.director.manifest import check_public_key
from otaguard.errors import (
    AuthError,
    CompatibilityError,
    ConflictError,
    ForbiddenError,
    KeyMaterialError,
    NotFoundError,
    OTAGuardError,
    PayloadTooLargeError,
    RateLimitedError,
    RepositoryError,
    StoreError,
    VerificationError,
)
from otaguard.identity.ratelimit import FailureWindow
from otaguard.repo.images import ReleaseInfo, sha256_of
from otaguard.server import checkin as checkin_flow
from otaguard.server import device_identity, identity_routes, schemas
from otaguard.server.auth import (
    DeviceClaim,
    device_dependency,
    identify_device,
    operator_dependency,
    refuse_device,
)
from otaguard.server.context import MAX_METADATA_BYTES, ServerContext
from otaguard.server.limits import BodyLimit
from otaguard.server.metrics import ServerMetrics
from otaguard.server.ranges import blob_response, bytes_response, etag_matches
from otaguard.store.blobs import check_digest

_METADATA_NAME = re.compile(
    r"^(\d+\.)?(root|targets|snapshot|timestamp)\.json$|^(\d+\.)?[A-Za-z0-9._-]+\.json$"
)
_STATUS_OF = {
    ForbiddenError: 403,
    RateLimitedError: 429,
    AuthError: 401,
    NotFoundError: 404,
    ConflictError: 409,
    CompatibilityError: 422,
    KeyMaterialError: 422,
    VerificationError: 422,
    RepositoryError: 422,
    PayloadTooLargeError: 413,
    StoreError: 400,
}
TIMESTAMP_REFRESH_SECONDS = 600.0
#: largest JSON request body (uploads and metadata have their own, larger limits)
MAX_JSON_BODY_BYTES = 1 << 20
_STREAMED_BODIES = ("/api/v1/artifacts/", "/api/v1/repository/")
_HTTP_CODES = {
    400: "bad_request",
    401: "auth",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The whole file"},
    206: {"description": "One byte range (Content-Range)"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    404: {"model": schemas.ErrorOut},
    416: {"description": "Range not satisfiable (Content-Range: bytes */size)"},
}


def _error_status(exc: OTAGuardError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS_OF:
            return _STATUS_OF[cls]
    return 400


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


class OTAGuardApp(FastAPI):
    """The FastAPI application with the device check-in (the hot path) answered in front of
    its middleware stack by ``server/checkin.py``."""

    checkin_endpoint: checkin_flow.CheckinEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.checkin_endpoint
        if endpoint is not None and endpoint.handles(scope):
            await endpoint(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(ctx: ServerContext) -> OTAGuardApp:
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def keep_fresh() -> None:
            while True:
                with contextlib.suppress(OTAGuardError):
                    await run_in_threadpool(ctx.repo.refresh_online_roles)
                await asyncio.sleep(TIMESTAMP_REFRESH_SECONDS)

        task = asyncio.create_task(keep_fresh())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(app.state.checkin_batcher.close)

    app = OTAGuardApp(
        title="OTAGuard",
        version=__version__,
        lifespan=lifespan,
        description="Secure OTA updates: device API, management API and TUF repository.",
    )
    app.state.ctx = ctx
    app.state.metrics = metrics

    @app.exception_handler(OTAGuardError)
    async def _otaguard_error(_request: Request, exc: OTAGuardError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=_error_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300]}
            for e in exc.errors()[:20]
        ]
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
        return JSONResponse(
            {"error": "validation", "detail": summary or "invalid request", "errors": errors},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY_BYTES, exempt=_STREAMED_BODIES)
    batcher = checkin_flow.CheckinBatcher(
        lambda requests, wait: ctx.store.check_in_many(requests, wait=wait),
        inline=ctx is not None and ctx.store.is_sqlite,  # None: OpenAPI document only
        on_batch=metrics.checkin_batch.observe,
    )
    app.state.checkin_batcher = batcher
    app.checkin_endpoint = checkin_flow.CheckinEndpoint(
        ctx=ctx,
        metrics=metrics,
        batcher=batcher,
        error_status=_error_status,
        max_body=MAX_JSON_BODY_BYTES,
    )

    # -- authentication ---------------------------------------------------------------------
    failures = FailureWindow()  # failed operator authentications per client address
    operator = operator_dependency(ctx, metrics, failures)
    device = device_dependency(ctx, metrics)

    Operator = Annotated[str, Depends(operator)]
    DeviceId = Annotated[str, Depends(device)]
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": schemas.ErrorOut},
        401: {"model": schemas.ErrorOut},
        403: {"model": schemas.ErrorOut},
        404: {"model": schemas.ErrorOut},
        409: {"model": schemas.ErrorOut},
        413: {"model": schemas.ErrorOut},
        422: {"model": schemas.ErrorOut},
        429: {"model": schemas.ErrorOut},
    }
    DeploymentIdPath = Annotated[int, FastApiPath(ge=1, le=schemas.MAX_INT)]
    DeviceIdPath = Annotated[str, FastApiPath(pattern=schemas.DEVICE_ID)]

    # -- device API -------------------------------------------------------------------------
    dev = APIRouter(prefix="/device/v1", tags=["device"], responses=errors)

    async def device_claim(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_otaguard_device: Annotated[str | None, Header()] = None,
    ) -> DeviceClaim:
        """Who a check-in says it comes from (the credential itself is checked in the
        check-in's transaction); refused before the body is looked at, as on the lean path."""
        del authorization, x_otaguard_device  # read from the scope; declared for OpenAPI
        try:
            return identify_device(ctx, request.scope)
        except AuthError as exc:
            raise await run_in_threadpool(refuse_device, ctx, metrics, request.scope, exc) from None

    @dev.post("/checkin", response_model=schemas.CheckInReply)
    async def checkin(
        request: Request,
        body: schemas.CheckIn,
        claim: Annotated[DeviceClaim, Depends(device_claim)],
    ) -> schemas.CheckInReply:
        """Report what the device runs in a version manifest it signed (DSSE envelope); get
        back what to do. The manifest is verified with the device's registered key before
        anything is recorded. (Served by ``server/checkin.py``'s lean layer unless it is
        switched off; the same functions answer either way.)"""
        return await checkin_flow.check_in(
            ctx, metrics, batcher, request.scope, claim.device_id, claim.credential, body
        )

    @dev.post("/events", response_model=schemas.EventOut, status_code=201)
    def post_event(body: schemas.EventIn, device_id: DeviceId) -> schemas.EventOut:
        ev = ctx.store.record_event(
            device_id,
            event=body.event,
            deployment_id=body.deployment_id,
            version=body.version,
            slot=body.slot,
            detail=dict(body.detail),
            report_id=body.report_id,
        )
        metrics.events.labels(body.event.value).inc()
        return schemas.EventOut(**ev.__dict__)

    @dev.get("/deployments/{deployment_id}/state", response_model=schemas.DeploymentStateOut)
    def deployment_state(
        deployment_id: DeploymentIdPath, device_id: DeviceId
    ) -> schemas.DeploymentStateOut:
        """Lets an agent learn that its deployment was cancelled while it downloads."""
        target = ctx.store.deployment_target(deployment_id, device_id)
        if target is None:
            raise NotFoundError(f"device is not part of deployment {deployment_id}")
        return schemas.DeploymentStateOut.model_validate(
            {
                "state": ctx.store.deployment_state(deployment_id),
                "status": str(target["status"]),
            }
        )

    app.include_router(dev)

    # -- TUF repository (public: everything in it is signed; any mirror may serve it) -------
    tuf = APIRouter(prefix="/tuf", tags=["repository"])

    @tuf.get("/metadata/{name}", responses=_DOWNLOAD_RESPONSES)
    def metadata(
        name: str,
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

    @tuf.get("/targets/{path:path}", responses=_DOWNLOAD_RESPONSES)
    def target(
        path: str,
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
        metrics.bytes_served.inc(int(response.headers.get("content-length", 0)))
        return response

    app.include_router(tuf)

    # -- management API ---------------------------------------------------------------------
    api = APIRouter(prefix="/api/v1", tags=["management"], responses=errors)

    @api.get("/repository/online-keys", response_model=schemas.OnlineKeys)
    def online_keys(_user: Operator) -> schemas.OnlineKeys:
        def key(signer: Any) -> dict[str, Any]:
            pub = signer.public_key
            return {"keyid": pub.keyid, **pub.to_dict()}

        return schemas.OnlineKeys(
            snapshot=key(ctx.repo.snapshot_signer),
            timestamp=key(ctx.repo.timestamp_signer),
            director=key(ctx.director),
        )

    @api.put("/repository/root", response_model=schemas.RootOut)
    async def put_root(request: Request, _user: Operator) -> schemas.RootOut:
        data = await _read_body(request, MAX_METADATA_BYTES)
        return schemas.RootOut(version=await run_in_threadpool(ctx.repo.install_root, data))

    @api.put("/repository/targets", response_model=schemas.PublishOut)
    async def put_targets(request: Request, _user: Operator) -> schemas.PublishOut:
        data = await _read_body(request, MAX_METADATA_BYTES)
        return await run_in_threadpool(_publish_targets, {"targets": data})

    @api.put("/repository/delegations", response_model=schemas.PublishOut)
    async def put_delegations(request: Request, _user: Operator) -> schemas.PublishOut:
        """Several targets roles (delegated, and top-level ``targets`` if it changed) at once,
        under one new snapshot: ``{"roles": {name: metadata}}``, delegators first."""
        import json

        try:
            body = json.loads(await _read_body(request, MAX_METADATA_BYTES))
            roles = body["roles"]
            if not isinstance(roles, dict) or not roles:
                raise TypeError("roles must be a non-empty object")
            data = {str(k): json.dumps(v).encode() for k, v in roles.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise RepositoryError(f'expected {{"roles": {{name: metadata}}}}: {exc}') from exc
        return await run_in_threadpool(_publish_targets, data)

    @api.put("/repository/delegations/{role}", response_model=schemas.PublishOut)
    async def put_delegation(role: str, request: Request, _user: Operator) -> schemas.PublishOut:
        data = await _read_body(request, MAX_METADATA_BYTES)
        return await run_in_threadpool(_publish_targets, {role: data})

    def _publish_targets(roles: dict[str, bytes]) -> schemas.PublishOut:
        from tuf.api.metadata import Metadata, Targets

        targets = {}
        for role, data in roles.items():
            try:
                md = Metadata[Targets].from_bytes(data)
            except Exception as exc:
                raise RepositoryError(f"{role}: not valid targets metadata: {exc}") from exc
            if not isinstance(md.signed, Targets):
                raise RepositoryError(f"{role}: expected targets metadata")
            targets.update(md.signed.targets)
        for name, t in targets.items():
            digest = sha256_of(t)
            if not ctx.blobs.exists(digest) or ctx.blobs.size(digest) != t.length:
                raise RepositoryError(f"artifact for {name} ({digest[:12]}) has not been uploaded")
            ReleaseInfo.of_target(t)
        result = ctx.repo.publish(roles)
        for name, t in targets.items():
            info = ReleaseInfo.of_target(t)
            ctx.store.upsert_release(
                name,
                version=info.version,
                hardware=list(info.hardware),
                security_version=info.security_version,
                sha256=sha256_of(t),
                length=t.length,
                custom=dict(t.custom),
            )
        return schemas.PublishOut(
            targets_version=result.targets_version,
            snapshot_version=result.snapshot_version,
            timestamp_version=result.timestamp_version,
            added=list(result.added),
            roles=result.roles,
        )

    @api.put("/artifacts/{sha256}", response_model=schemas.ArtifactOut)
    async def put_artifact(
        sha256: Annotated[str, FastApiPath(pattern=r"^[0-9a-f]{64}$")],
        request: Request,
        _user: Operator,
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

    @api.get("/releases", response_model=list[schemas.ReleaseOut])
    def releases(_user: Operator) -> list[schemas.ReleaseOut]:
        return [schemas.ReleaseOut(**r.__dict__) for r in ctx.store.list_releases()]

    @api.get("/releases/{target_name:path}", response_model=schemas.ReleaseOut)
    def release(
        target_name: Annotated[str, FastApiPath(max_length=255)], _user: Operator
    ) -> schemas.ReleaseOut:
        return schemas.ReleaseOut(**ctx.store.get_release(target_name).__dict__)

    @api.post("/devices", response_model=schemas.DeviceCreated, status_code=201)
    def register_device(body: schemas.DeviceIn, _user: Operator) -> schemas.DeviceCreated:
        import secrets

        key = body.manifest_key
        manifest_key = (
            check_public_key(key.model_dump(exclude_none=True)) if key is not None else None
        )
        credential = secrets.token_urlsafe(32)
        ctx.store.register_device(
            body.id, body.hardware, credential, body.tags, manifest_key=manifest_key
        )
        return schemas.DeviceCreated(id=body.id, credential=credential)

    @api.get("/devices", response_model=schemas.DevicePage)
    def list_devices(
        _user: Operator,
        hardware: Annotated[str | None, Query(max_length=64)] = None,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        version: Annotated[str | None, Query(max_length=64)] = None,
        state: Annotated[schemas.UpdateState | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> schemas.DevicePage:
        """Devices matching every filter given (``state``: the update state each device last
        reported, e.g. ``rolled_back`` or ``failed``), one page at a time, by id."""
        items, total = ctx.store.list_devices(
            hardware=hardware, tag=tag, version=version, state=state, limit=limit, offset=offset
        )
        return schemas.DevicePage(
            items=[schemas.DeviceOut(**d.__dict__) for d in items],
            total=total,
            limit=limit,
            offset=offset,
        )

    @api.get("/devices/{device_id}", response_model=schemas.DeviceDetail)
    def device_detail(device_id: DeviceIdPath, _user: Operator) -> schemas.DeviceDetail:
        d = ctx.store.get_device(device_id)
        events = [schemas.EventOut(**e.__dict__) for e in ctx.store.events(device_id)]
        return schemas.DeviceDetail(**d.__dict__, events=events)

    @api.get("/devices/{device_id}/events", response_model=schemas.EventPage)
    def device_events(
        device_id: DeviceIdPath,
        _user: Operator,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> schemas.EventPage:
        """The device's status history, newest page first (each page oldest first); page back
        with ``before``."""
        ctx.store.get_device(device_id)
        items = ctx.store.events(device_id, limit=limit + 1, before=before)
        more = len(items) > limit
        items = items[1:] if more else items
        return schemas.EventPage(
            items=[schemas.EventOut(**e.__dict__) for e in items],
            next_before=items[0].id if more else None,
        )

    @api.put("/devices/{device_id}/tags", response_model=schemas.DeviceOut)
    def set_tags(
        device_id: DeviceIdPath, body: schemas.TagsIn, _user: Operator
    ) -> schemas.DeviceOut:
        """Replace the device's tags (its groups: deployments select devices by tag)."""
        return schemas.DeviceOut(**ctx.store.set_device_tags(device_id, body.tags).__dict__)

    @api.get("/tags", response_model=list[schemas.TagOut])
    def tags(_user: Operator) -> list[schemas.TagOut]:
        """Every tag (device group) in use, with how many devices carry it."""
        return [schemas.TagOut(tag=t, devices=n) for t, n in ctx.store.tag_counts()]

    def _dep_out(d: Any) -> schemas.DeploymentOut:
        return schemas.DeploymentOut(**d.__dict__, total=d.total)

    @api.post("/deployments", response_model=schemas.DeploymentCreated, status_code=201)
    def create_deployment(body: schemas.DeploymentIn, user: Operator) -> schemas.DeploymentCreated:
        """Deploy a release to the devices the selector picks. Devices that could never
        install it are left out and listed in ``excluded`` with the reason; 422 when none is
        left (nothing is created)."""
        selector = body.selector.model_dump(exclude_none=True)
        if not any(selector.get(k) for k in ("all", "tag", "hardware", "devices")):
            raise CompatibilityError("selector must pick devices: all, tag, hardware or devices")
        dep = ctx.store.create_deployment(
            name=body.name,
            target_name=body.target_name,
            selector=selector,
            created_by=user,
            production_tags=ctx.identity.production_groups(),
        )
        return schemas.DeploymentCreated(
            **_dep_out(dep).model_dump(),
            excluded=[
                schemas.ExcludedDeviceOut(
                    device_id=e.device_id, reason=e.reason.value, detail=e.detail
                )
                for e in dep.excluded
            ],
        )

    @api.get("/deployments", response_model=schemas.DeploymentPage)
    def list_deployments(
        _user: Operator,
        state: Annotated[schemas.DeploymentStateName | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> schemas.DeploymentPage:
        """Deployments by id (optionally only those in ``state``), one page at a time."""
        items = ctx.store.list_deployments(state=state, limit=limit, offset=offset)
        return schemas.DeploymentPage(
            items=[_dep_out(d) for d in items],
            total=ctx.store.count_deployments(state=state),
            limit=limit,
            offset=offset,
        )

    @api.get("/deployments/{deployment_id}", response_model=schemas.DeploymentOut)
    def get_deployment(deployment_id: DeploymentIdPath, _user: Operator) -> schemas.DeploymentOut:
        return _dep_out(ctx.store.get_deployment(deployment_id))

    @api.get("/deployments/{deployment_id}/devices", response_model=schemas.DeploymentTargetPage)
    def deployment_devices(
        deployment_id: DeploymentIdPath,
        _user: Operator,
        status: Annotated[schemas.TargetStatusName | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    ) -> schemas.DeploymentTargetPage:
        """The deployment's devices by id with where each stands (optionally only those with
        ``status``, e.g. ``failed``), one page at a time."""
        ctx.store.get_deployment(deployment_id)
        rows = ctx.store.deployment_targets(
            deployment_id, status=status, limit=limit, offset=offset
        )
        return schemas.DeploymentTargetPage(
            items=[schemas.DeploymentTargetOut(**t) for t in rows],
            total=ctx.store.count_deployment_targets(deployment_id, status=status),
            limit=limit,
            offset=offset,
        )

    @api.post("/deployments/{deployment_id}/cancel", response_model=schemas.DeploymentOut)
    def cancel_deployment(
        deployment_id: DeploymentIdPath, _user: Operator
    ) -> schemas.DeploymentOut:
        return _dep_out(ctx.store.cancel_deployment(deployment_id))

    app.include_router(api)
    identity_routes.install(app, ctx, metrics, operator, failures, errors)
    device_identity.install(app, ctx, metrics, operator, errors)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
