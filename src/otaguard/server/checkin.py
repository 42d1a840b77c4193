"""The device check-in, the server's hot path: every device of a fleet calls it every poll.

Two parts keep its cost near the web server's own:

* ``CheckinBatcher`` -- group commit. Everything that arrived while the previous transaction
  ran is handled in one transaction (``Store.check_in_many``: authenticate, verify the signed
  manifest, record, find the offer) -- on the event loop for SQLite, on one worker thread for
  PostgreSQL. Each request still gets its own answer only after its transaction committed.
* ``CheckinEndpoint`` -- a plain ASGI handler that answers ``POST /device/v1/checkin`` ahead
  of the framework (body limit, device identity, schema validation, the batcher, the signed
  assignment), so the request does not pay for the framework's middleware, routing,
  dependency solving and thread-pool hops.
  The FastAPI route of the same path stays for the OpenAPI document and serves when the layer
  is switched off (``Settings.lean_checkin``); both produce the same answers from the same
  functions here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from otaguard.director.assignment import sign_assignment
from otaguard.director.manifest import VersionManifest, verify_manifest
from otaguard.errors import (
    AuthError,
    ManifestError,
    ManifestReplayError,
    OTAGuardError,
    PayloadTooLargeError,
    RequestFormatError,
    StoreBusyError,
    UnsupportedMediaTypeError,
)
from otaguard.repo.delta_targets import pick_delta
from otaguard.server import schemas
from otaguard.server.auth import identify_device, refuse_device
from otaguard.server.context import ServerContext
from otaguard.server.device_identity import scope_header
from otaguard.server.metrics import ServerMetrics
from otaguard.store.database import CheckinOutcome, CheckinRequest, Offer

log = logging.getLogger(__name__)
CHECKIN_PATH = "/device/v1/checkin"
#: most check-ins handled in one transaction
MAX_BATCH = 256

_Delivery = tuple[asyncio.AbstractEventLoop, asyncio.Future[CheckinOutcome]]
_Item = tuple[CheckinRequest, _Delivery]


class CheckinBatcher:
    """Runs check-ins through ``check_in_many`` (``Store.check_in_many``) in batches: the
    check-ins that arrived while the previous batch ran go into one transaction.

    Where a batch runs depends on the database (``inline``):

    * SQLite (inline): on the event loop, in a callback scheduled once per loop iteration for
      everything submitted in it. The work is CPU-bound under the one interpreter lock, so a
      worker thread would only add lock hand-overs. The loop never waits for another writer:
      when one holds the database, the batch goes to the worker thread instead.
    * PostgreSQL: on one worker thread; while it waits for the network, the loop goes on
      serving requests.
    """

    def __init__(
        self,
        check_in_many: Callable[[list[CheckinRequest], bool], list[CheckinOutcome]],
        *,
        inline: bool = False,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._check_in_many = check_in_many  # (requests, wait for other writers)
        self._inline = inline
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches run so far (tests, the benchmark)
        self.checkins = 0
        self.handed_to_worker = 0  # inline batches that found the database busy

    async def submit(self, request: CheckinRequest) -> CheckinOutcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CheckinOutcome] = loop.create_future()
        item = (request, (loop, future))
        if self._inline:
            pending = self._pending.get(loop)
            if pending is None:
                self._pending[loop] = [item]
                loop.call_soon(self._flush, loop)
            else:
                pending.append(item)
        else:
            self._ensure_worker()
            self._queue.put(item)
        return await future

    def close(self) -> None:
        """Stop the worker after the check-ins already queued."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._pending.pop(loop, [])
        for start in range(0, len(items), self._max_batch):
            batch = items[start : start + self._max_batch]
            try:
                outcomes: list[CheckinOutcome] | BaseException = self._check_in_many(
                    [request for request, _ in batch], False
                )
            except StoreBusyError:
                self.handed_to_worker += 1
                self._ensure_worker()
                for item in batch:
                    self._queue.put(item)
                continue
            except Exception as exc:  # the whole transaction failed: every caller hears why
                outcomes = exc
            self._count(len(batch))
            _deliver([(future, _result(outcomes, i)) for i, (_, (_, future)) in enumerate(batch)])

    def _ensure_worker(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="otaguard-checkin", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Item]) -> None:
        try:
            outcomes: list[CheckinOutcome] | BaseException = self._check_in_many(
                [request for request, _ in batch], True
            )
        except Exception as exc:  # the whole transaction failed: every caller hears why
            outcomes = exc
        self._count(len(batch))
        per_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
        for i, (_, (loop, future)) in enumerate(batch):
            per_loop.setdefault(loop, []).append((future, _result(outcomes, i)))
        for loop, results in per_loop.items():  # one wake-up per event loop and batch
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, results)

    def _count(self, size: int) -> None:
        self.batches += 1
        self.checkins += size
        if self._on_batch is not None:
            self._on_batch(size)


def _result(outcomes: list[CheckinOutcome] | BaseException, i: int) -> Any:
    return outcomes if isinstance(outcomes, BaseException) else outcomes[i]


def _deliver(results: list[tuple[asyncio.Future[CheckinOutcome], Any]]) -> None:
    for future, result in results:
        if future.done():  # the request was cancelled (client went away)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def manifest_verifier(
    envelope: dict[str, Any], device_id: str, metrics: ServerMetrics
) -> Callable[[str | None], VersionManifest]:
    """The report callback of a check-in: the manifest verified with the registered key."""

    def verified(key_json: str | None) -> VersionManifest:
        try:
            return verify_manifest(envelope, key_json, device_id=device_id)
        except ManifestError:
            metrics.manifest_failures.inc()
            raise

    return verified


async def check_in(
    ctx: ServerContext,
    metrics: ServerMetrics,
    batcher: CheckinBatcher,
    scope: Scope,
    claim_device: str,
    credential: str | None,
    body: schemas.CheckIn,
) -> schemas.CheckInReply:
    """One check-in, after the request's identity claim was read: through the batcher, then
    the reply (with a director assignment signed for this device when there is an offer)."""
    request = CheckinRequest(
        claim_device,
        manifest_verifier(body.manifest.model_dump(), claim_device, metrics),
        credential,
    )
    started = time.perf_counter()
    outcome = await batcher.submit(request)
    if isinstance(outcome.error, ManifestReplayError):
        metrics.manifest_failures.inc()
    if outcome.error is not None:
        if isinstance(outcome.error, AuthError):
            raise await run_in_threadpool(refuse_device, ctx, metrics, scope, outcome.error)
        raise outcome.error
    reply = reply_for(ctx, metrics, claim_device, outcome.offer)
    metrics.checkin_seconds.observe(time.perf_counter() - started)
    return reply


def reply_for(
    ctx: ServerContext, metrics: ServerMetrics, device_id: str, offer: Offer | None
) -> schemas.CheckInReply:
    interval = ctx.settings.poll_interval
    if offer is None:
        metrics.checkins.labels("none").inc()
        return schemas.CheckInReply(action="none", poll_interval=interval)
    target = ctx.repo.find_target(offer.target_name)
    if target is None:
        metrics.checkins.labels("missing_target").inc()
        return schemas.CheckInReply(action="none", poll_interval=interval)
    delta = pick_delta(target, offer.image_sha256, ctx.repo.find_target)
    assignment = sign_assignment(
        ctx.director,
        device_id=device_id,
        deployment_id=offer.deployment_id,
        counter=offer.counter,
        target=target,
        delta_path=None if delta is None else delta.path,
    )
    metrics.checkins.labels("update").inc()
    if delta is not None:
        metrics.deltas_offered.inc()
    return schemas.CheckInReply(
        action="update",
        assignment=assignment.decode(),
        deployment_id=offer.deployment_id,
        poll_interval=interval,
    )


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: dict[str, Any]


def validation_reply(exc: ValidationError) -> ErrorReply:
    """The 422 answer for a body that does not match its schema (the app's format)."""
    errors = [
        {"loc": ["body", *(str(x) for x in e.get("loc", ()))], "msg": str(e.get("msg", ""))[:300]}
        for e in exc.errors()[:20]
    ]
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
    return ErrorReply(
        422, {"error": "validation", "detail": summary or "invalid request", "errors": errors}
    )


def parse_checkin(content_type: str | None, body: bytes) -> schemas.CheckIn:
    """The check-in body, read the same way on both paths (lean layer and FastAPI route).

    Raises:
        UnsupportedMediaTypeError: not ``Content-Type: application/json`` (415).
        RequestFormatError: not valid UTF-8 JSON (400).
        pydantic.ValidationError: JSON that does not match the schema (422,
            ``validation_reply``).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaTypeError(
            "check-in bodies are JSON: send Content-Type: application/json"
        )
    try:
        return schemas.CheckIn.model_validate_json(body)
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise RequestFormatError("request body is not valid UTF-8 JSON") from None
        raise


class CheckinEndpoint:
    """The ASGI handler of ``POST /device/v1/checkin`` (``handles`` tells which requests it
    takes; ``server/app.py`` puts it in front of the framework's middleware stack).
    ``error_status`` maps an ``OTAGuardError`` to its HTTP status (the app's table)."""

    def __init__(
        self,
        *,
        ctx: ServerContext,
        metrics: ServerMetrics,
        batcher: CheckinBatcher,
        error_status: Callable[[OTAGuardError], int],
        max_body: int,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.batcher = batcher
        self.error_status = error_status
        self.max_body = max_body

    def handles(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["path"] == CHECKIN_PATH
            and scope["method"] == "POST"
            and self.ctx.settings.lean_checkin
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._body(scope, receive)
            if body is None:  # the client went away before it finished its request
                return
            status, payload = 200, await self._answer(scope, body)
        except OTAGuardError as exc:
            status = self.error_status(exc)
            payload = json.dumps({"error": exc.code, "detail": str(exc)}).encode()
        except ValidationError as exc:
            refused = validation_reply(exc)
            status, payload = refused.status, json.dumps(refused.body).encode()
        except Exception:  # a bug or a broken database: logged here, no details to the device
            log.exception("check-in failed")
            status, payload = 500, b'{"error":"internal","detail":"internal server error"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, body: bytes) -> bytes:
        try:
            claim = identify_device(self.ctx, scope)
        except AuthError as exc:
            raise await run_in_threadpool(
                refuse_device, self.ctx, self.metrics, scope, exc
            ) from None
        checkin = parse_checkin(scope_header(scope, "content-type"), body)
        reply = await check_in(
            self.ctx, self.metrics, self.batcher, scope, claim.device_id, claim.credential, checkin
        )
        return reply.model_dump_json().encode()

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The request body (None if the client disconnected); ``PayloadTooLargeError`` for
        a declared or streamed body over the limit, before reading more of it."""
        too_large = PayloadTooLargeError(f"request body larger than {self.max_body} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
