"""``otaguard demo --keep-serving`` prints the console URL and a login that works, once: the
password is in no file of the demo's data directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from otaguard.server.console.session import LOGIN_COOKIE, SESSION_COOKIE

LINE = re.compile(r"web console: (https://\S+/console/)\s+login (\S+) / (\S+) \(shown once")


def test_demo_keep_serving_prints_a_working_console_login(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "COLUMNS": "250", "TERM": "dumb"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("otaguard")),
            "demo",
            "--keep-serving",
            "--devices",
            "2",
            "--port",
            "0",
            "--payload-kib",
            "16",
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        found = None
        deadline = time.monotonic() + 120
        seen = []
        assert proc.stdout is not None
        while found is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            found = LINE.search(line)
        assert found is not None, "".join(seen)
        url, user, password = found.groups()
        base = url.removesuffix("/console/")
        with httpx.Client(base_url=base, verify=str(data / "tls" / "ca.pem")) as client:
            form = client.get("/console/login")
            nonce = client.cookies[LOGIN_COOKIE]
            assert f'value="{nonce}"' in form.text
            r = client.post(
                "/console/login",
                data={"username": user, "password": password, "login_csrf": nonce},
            )
            assert r.status_code == 303
            assert client.cookies.get(SESSION_COOKIE)
            overview = client.get("/console/")
            assert overview.status_code == 200
            assert ">2</span> devices" in overview.text
        leaked = [p for p in data.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
        assert leaked == []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
