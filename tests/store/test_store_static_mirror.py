"""The published repository exported as plain files and served by a plain static HTTPS server
(Python's http.server with Range): devices check in with the server (director) and fetch
metadata and images from the mirror, and still update."""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.demo import Demo
from otaguard.errors import StoreError
from otaguard.net.tls import tls_context
from otaguard.server.ranges import RangeNotSatisfiable, parse_range
from otaguard.server.static_export import target_file_path


class RangeFiles(SimpleHTTPRequestHandler):
    """GET of static files with single-range support; records what it was asked."""

    seen: list[tuple[str, str | None, str | None]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        try:
            span = parse_range(self.headers.get("Range"), len(data))
        except RangeNotSatisfiable:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = span if span else (0, len(data) - 1)
        self.send_response(206 if span else 200)
        if span:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[first : last + 1])

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def mirror(demo_world: Demo, tmp_path: Path) -> Iterator[tuple[str, Path, RangeFiles]]:
    assert demo_world.ctx is not None
    tls = demo_world.ctx.settings.tls
    assert tls is not None
    root = tmp_path / "mirror"
    root.mkdir()
    seen: list[tuple[str, str | None, str | None]] = []
    handler = type("Handler", (RangeFiles,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", root, handler  # type: ignore[misc]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_target_file_path() -> None:
    assert str(target_file_path("hw/fw.img", "ab" * 32)) == f"hw/{'ab' * 32}.fw.img"
    assert str(target_file_path("fw.img", "cd" * 32)) == f"{'cd' * 32}.fw.img"
    for bad in ("../x", "/etc/x", "a//b", "a/./b"):
        with pytest.raises(StoreError):
            target_file_path(bad, "0" * 64)


def test_devices_update_from_a_static_mirror(
    demo_world: Demo, mirror: tuple[str, Path, type[RangeFiles]]
) -> None:
    d = demo_world
    url, root, handler = mirror
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    server_dir = d.run_dir / "server"

    result = CliRunner().invoke(app, ["export-static", str(root), "--data-dir", str(server_dir)])
    assert result.exit_code == 0, result.output
    metadata = sorted(p.name for p in (root / "tuf" / "metadata").iterdir())
    assert "timestamp.json" in metadata
    assert any(n.endswith(".snapshot.json") for n in metadata)
    assert any(n.endswith(".root.json") for n in metadata)
    digest = hashlib.sha256(v2).hexdigest()
    assert (root / "tuf" / "targets" / target_file_path(v2_name, digest)).read_bytes() == v2
    again = CliRunner().invoke(app, ["export-static", str(root), "--data-dir", str(server_dir)])
    assert "0 target files written (2 already there)" in again.output

    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    with httpx.Client(verify=tls_context(d.ctx.settings.tls.ca_cert)) as http:
        ranged = http.get(
            f"{url}/tuf/targets/{target_file_path(v2_name, digest)}",
            headers={"Range": "bytes=10-19"},
        )
        assert (ranged.status_code, ranged.content) == (206, v2[10:20])

    d.provision_fleet(v1)
    for dev in d.fleet:
        dev.config.repository_url = url
        dev.config.checkpoint_bytes = 16 * 1024
        dev.config.checkpoint_journal_seconds = 0.0
        dev.reboot()
    handler.seen.clear()
    dep_id = d.deploy(v2_name)
    runs = d.run()

    assert all(r.version_after == "2.0.0" and not r.error for r in runs), runs
    assert d.api is not None
    assert d.api.deployment(dep_id)["counts"] == {"succeeded": len(runs)}
    paths = [p for p, _, _ in handler.seen]
    assert sum(p.startswith("/tuf/targets/") for p in paths) >= len(runs)
    assert any(p == "/tuf/metadata/timestamp.json" for p in paths)
    # The mirror never sees a device credential.
    assert all(auth is None for _, _, auth in handler.seen)
