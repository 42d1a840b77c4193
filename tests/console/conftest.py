"""Fixtures of the console tests: an in-process app with one operator per role (fast, for
the security rules), and a real server over TLS on 127.0.0.1 with a simulated fleet (for the
browser tests; one per module)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from otaguard.demo import Demo
from otaguard.server.app import create_app
from otaguard.server.console.session import SESSION_COOKIE, csrf_token
from otaguard.server.context import ServerContext, ServerSettings

#: operator name per role (one role each)
OPERATORS = {
    "viewer": "vera",
    "deployer": "dora",
    "approver": "abel",
    "admin": "ada",
    "release_manager": "rene",
}
FAILURE_REASON = "simulated: watchdog self-test failed"


@dataclass
class ConsoleApp:
    """The console in process (TestClient over https://testserver, so Secure cookies flow)."""

    ctx: ServerContext
    client: TestClient
    passwords: dict[str, str]

    def password(self, name: str) -> str:
        """The operator's password, set on first use (argon2 is slow on purpose: only the
        tests of the login form pay for it)."""
        if name not in self.passwords:
            self.passwords[name] = secrets.token_urlsafe(12)
            self.ctx.identity.set_password(name, self.passwords[name])
        return self.passwords[name]

    def session(self, name: str) -> str:
        """A console session for ``name`` as login issues it, without the password check."""
        return self.ctx.identity.create_token(name, scopes=["*"], label="login").token

    def login(self, name: str, password: str | None = None) -> str:
        """Log in through the login form; returns the session token (the cookie)."""
        password = password or self.password(name)
        self.client.cookies.clear()
        form = self.client.get("/console/login")
        nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
        assert nonce is not None
        r = self.client.post(
            "/console/login",
            data={
                "username": name,
                "password": password,
                "login_csrf": nonce.group(1),
                "next": "/console/",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        token = self.client.cookies.get(SESSION_COOKIE)
        assert token
        return token

    def post(
        self,
        path: str,
        token: str,
        data: dict[str, object] | None = None,
        *,
        csrf: str | None = None,
    ):  # type: ignore[no-untyped-def]
        body = {"csrf": csrf_token(token) if csrf is None else csrf, **(data or {})}
        return self.client.post(
            path, data=body, cookies={SESSION_COOKIE: token}, follow_redirects=False
        )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleApp]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path / "server"))
    for role, name in OPERATORS.items():
        ctx.identity.add_user(name, [role])
    with TestClient(create_app(ctx), base_url="https://testserver") as client:
        yield ConsoleApp(ctx, client, {})
    ctx.close()


@dataclass
class ConsoleFleet:
    """A real server on 127.0.0.1 (TLS) with a published v1 and v2 and a simulated fleet
    running v1; one device fails its health check after the update (it will roll back)."""

    demo: Demo
    passwords: dict[str, str]
    v2_name: str
    failing: str
    cert_pem: bytes
    runs: list[object] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.demo.url

    @property
    def ctx(self) -> ServerContext:
        assert self.demo.ctx is not None
        return self.demo.ctx


def _fleet(base: Path, *, production: bool, fail_one: bool) -> Iterator[ConsoleFleet]:
    d = Demo(base / "data", devices=5, port=0, payload_size=16 * 1024, workers=5)
    try:
        d.start_server()
        d.setup_repository()
        _, v1 = d.release("1.0.0")
        v2_name, _ = d.release("2.0.0", security_version=1)
        d.provision_fleet(v1)
        failing = d.fleet[2]
        if fail_one:
            failing._health = lambda _boot: (False, FAILURE_REASON)
        assert d.ctx is not None
        assert d.ctx.settings.tls is not None
        if production:
            d.ctx.identity.set_production("demo", True, by="test")
        passwords = {}
        for role, name in OPERATORS.items():
            # a password set at creation was chosen by someone else: each operator sets their
            # own, as the separation-of-duties rule asks before anyone may approve
            first = secrets.token_urlsafe(12)
            d.ctx.identity.add_user(name, [role], first)
            passwords[name] = secrets.token_urlsafe(12)
            d.ctx.identity.change_own_password(name, first, passwords[name])
        yield ConsoleFleet(
            d, passwords, v2_name, failing.config.device_id, d.ctx.settings.tls.cert.read_bytes()
        )
    finally:
        d.close()


@pytest.fixture(scope="module")
def console_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleFleet]:
    yield from _fleet(tmp_path_factory.mktemp("console"), production=True, fail_one=True)


@pytest.fixture(scope="module")
def rollout_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleFleet]:
    """The same world without production groups (rollouts start at once) and with no device
    failing yet: a test picks which one fails, once it knows the devices' phases."""
    yield from _fleet(tmp_path_factory.mktemp("rollouts"), production=False, fail_one=False)
