"""``HEAD`` for every ``GET`` route (RFC 9110 section 9.3.2): the same status and headers as
the ``GET`` would answer, without the body (a pure ASGI middleware).

FastAPI routes declare ``GET`` only, so ``HEAD`` answered 405 everywhere, though the access
policy (``identity/rbac.py``) already treats ``HEAD`` as ``GET``. Here the request is passed on
as a ``GET`` and the body is dropped on the way out; ``Content-Length`` stays that of the
``GET`` answer, as RFC 9110 allows. Same authentication, same authorization, same audit (reads
are not audited).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body: nothing to send
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
