"""uvicorn's HTTP/1.1 protocol (httptools) with limits on what a client can make it hold.

uvicorn bounds none of this with httptools: the parser keeps a header field of any length (a
256 MiB one took 73 s and 500 MiB of memory), and a connection that never sends a request is
kept for ever, counting against ``limit_concurrency`` for everyone. This subclass stands between
the socket and the parser: the head of a request is handed to the parser only up to
``max_head_bytes`` (so memory per connection is bounded before any parsing), the request target
and the header fields are counted in the parser's callbacks, and event-loop timers bound the time
to receive the head and each stretch of body. Open connections are counted per client address.
The values and answers are in ``edge_limits.py`` and docs/SECURITY.md ("Limits").
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from otaguard.server.edge_limits import (
    AddressCounter,
    EdgeLimits,
    HeadBudget,
    Refusal,
    RefusedRequest,
)


class EdgeHttpProtocol(HttpToolsProtocol):
    """One connection. ``limits`` and ``addresses`` are set per listener by ``edge_protocol``."""

    limits: EdgeLimits = EdgeLimits()
    addresses: AddressCounter = AddressCounter(EdgeLimits().max_connections_per_address)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = HeadBudget(self.limits)
        self._in_head = True  # waiting for (the rest of) a request line and headers
        self._heads_done = 0  # request heads parsed on this connection
        self._pending: RefusedRequest | None = None
        self._refused = False  # answered with a refusal: input is discarded until close
        self._discarded = 0
        self._address: str | None = None
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None:
            if not self.addresses.acquire(address):
                self._refuse(RefusedRequest(Refusal.BUSY, "too many connections from this address"))
                return
            self._address = address
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._address is not None:
            self.addresses.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        if not self._in_head:
            super().data_received(data)
            return
        self._arm_head_timer()
        room = self._budget.room()
        head, rest = data[:room], data[room:]
        self._budget.take(len(head))
        heads_before = self._heads_done
        super().data_received(head)
        if rest and not self.transport.is_closing() and not self._refused:
            if self._heads_done == heads_before:  # still the same head, and it is full
                self._refuse(self._budget.too_large())
            else:  # a head ended inside ``head``: a body or the next request follows
                self.data_received(rest)

    # Parser callbacks (httptools turns an exception raised here into HttpParserCallbackError,
    # which uvicorn answers through ``send_400_response``)

    def on_url(self, url: bytes) -> None:
        self._check(self._budget.url, len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._check(self._budget.header)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_done += 1
        self._cancel_head_timer()
        self._arm_body_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm_body_timer()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self._in_head = True
        self._budget.reset()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            super().send_400_response(msg)
        else:
            self._refuse(pending)

    # Refusals

    def _check(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except RefusedRequest as refusal:
            self._pending = refusal
            raise

    def _refuse(self, refusal: RefusedRequest) -> None:
        """Answer ``refusal`` (unless a response is under way: then only close), discard what
        the client still sends for a moment so the answer reaches it, then close."""
        self._cancel_timers()
        self._refused = True
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # too late for another status line
                self.transport.close()
                return
            cycle.disconnected = True  # the application's receive() ends, its send() is void
            cycle.message_event.set()
        self.transport.write(refusal_response(refusal.refusal, refusal.reason))
        self.loop.call_later(self.limits.linger_seconds, self._close)

    def _discard(self, n: int) -> None:
        self._discarded += n
        if self._discarded > self.limits.linger_bytes:
            self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # Timers

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # the server is still answering the previous request
            return
        self._refuse(RefusedRequest(Refusal.TIMEOUT, "request head not received in time"))

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self.limits.body_idle_timeout, self._body_expired)

    def _body_expired(self) -> None:
        self._body_timer = None
        if self.cycle is not None and self.cycle.response_complete:
            self._close()  # answered without reading the body, which never came: just close
            return
        if self.flow.read_paused:  # the application is not reading: not the client's delay
            self._arm_body_timer()
            return
        self._refuse(RefusedRequest(Refusal.TIMEOUT, "request body not received in time"))

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def refusal_response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    body = reason.encode("ascii", "replace")
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def edge_protocol(limits: EdgeLimits) -> type[EdgeHttpProtocol]:
    """The protocol class for one listener: ``limits``, and one per-address counter shared by
    that listener's connections."""
    return type(
        "EdgeHttpProtocol",
        (EdgeHttpProtocol,),
        {"limits": limits, "addresses": AddressCounter(limits.max_connections_per_address)},
    )
