"""The throughput ceiling: a bare ASGI app answering a fixed JSON body, served by the same stack
as the OTAGuard server (``otaguard.server.runner.uvicorn_config``: uvicorn, TLS >= 1.2).

Run: ``python bench/bare_asgi.py --port N --tls-dir DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn

from otaguard.crypto.tls import ensure_local_tls
from otaguard.server.runner import uvicorn_config

BODY = b'{"action":"none","assignment":null,"deployment_id":null,"poll_interval":60}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body like a real handler
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-dir", type=Path, required=True)
    args = parser.parse_args()
    tls = ensure_local_tls(args.tls_dir)
    uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=args.port, tls=tls)).run()


if __name__ == "__main__":
    main()
