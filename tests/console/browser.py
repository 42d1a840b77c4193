"""Debian's chromium, headless, driven by Selenium through Debian's chromedriver: never a
downloaded browser. A fresh profile per browser; the server's own TLS certificate is trusted
by its key (``--ignore-certificate-errors-spki-list``), not by turning certificate checks off."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .conftest import ConsoleFleet

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
LAPTOP = (1366, 900)
TABLET = (820, 1180)


def spki_pin(cert_pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate: chromium's pin format."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def open_browser(profile: Path, cert_pem: bytes, size: tuple[int, int] = LAPTOP):  # type: ignore[no-untyped-def]
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("chromium and chromium-driver (Debian) are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--ignore-certificate-errors-spki-list={spki_pin(cert_pem)}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def artifacts_dir(name: str) -> Path:
    """Where screenshots go: a fresh temporary directory, printed so a run can find them."""
    path = Path(tempfile.mkdtemp(prefix=f"otaguard-console-{name}-"))
    print(f"console screenshots: {path}")
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Person:
    """A browser and the steps a person takes in it."""

    def __init__(self, fleet: ConsoleFleet, profile: Path, shots: Path) -> None:
        self.fleet = fleet
        self.shots = shots
        self.driver = open_browser(profile, fleet.cert_pem)

    def go(self, path: str) -> None:
        self.driver.get(self.fleet.url + path)

    def el(self, css: str):  # type: ignore[no-untyped-def]
        return self.driver.find_element("css selector", css)

    def els(self, css: str) -> list:  # type: ignore[type-arg]
        return self.driver.find_elements("css selector", css)

    def arrive(self, css: str, what: str) -> None:
        """Wait for an element of the page a click leads to: the URL can change before the
        new document replaces the old one."""
        wait_for(lambda: bool(self.els(css)), what=what)

    @property
    def path(self) -> str:
        return str(self.driver.current_url).removeprefix(self.fleet.url)

    def text(self) -> str:
        return str(self.el("body").text)

    def shot(self, name: str) -> Path:
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, min(int(height) + 40, 2400))
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(width, 900)
        return path

    def login(self, name: str, password: str | None = None) -> None:
        self.go("/console/login")
        self.el("#username").send_keys(name)
        self.el("#password").send_keys(password or self.fleet.passwords[name])
        self.el("#login-submit").click()

    def logout(self) -> None:
        self.el("#logout").click()
        self.arrive("#login-submit", "the login page")

    def submit_forged(self, action: str, csrf: str | None) -> None:
        """Post a form the page does not offer (what a curious user or a hostile page
        would send), with the session's own CSRF token or a wrong one."""
        self.driver.execute_script(
            """const f = document.createElement('form');
            f.method = 'post'; f.action = arguments[0];
            const i = document.createElement('input');
            i.type = 'hidden'; i.name = 'csrf';
            i.value = arguments[1] === null ? document.querySelector('input[name=csrf]').value : arguments[1];
            f.appendChild(i); document.body.appendChild(f); f.submit();""",
            action,
            csrf,
        )

    def csp_violations(self) -> list[str]:
        return [
            str(e["message"])
            for e in self.driver.get_log("browser")
            if "Content Security Policy" in str(e["message"])
        ]

    def fetch_post(self, path: str, fields: dict[str, str] | None = None) -> int:
        """POST a form from the page with ``fetch`` (the session's cookie and its own CSRF
        token, as a curious user could) and return the HTTP status the server answered."""
        return int(
            self.driver.execute_async_script(
                """const done = arguments[arguments.length - 1];
                const body = new FormData();
                body.append('csrf', document.querySelector('input[name=csrf]').value);
                for (const [k, v] of Object.entries(arguments[1])) body.append(k, v);
                fetch(arguments[0], {method: 'POST', body: body, redirect: 'manual',
                                     credentials: 'same-origin'})
                  .then(r => done(r.status)).catch(() => done(-1));""",
                path,
                fields or {},
            )
        )

    def tab_reaches(self, wanted: set[str], max_tabs: int = 60) -> set[str]:
        """Press Tab from the top of the page; the ids of ``wanted`` that got the focus."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self.driver.execute_script("document.activeElement && document.activeElement.blur();")
        reached: set[str] = set()
        for _ in range(max_tabs):
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            ident = str(self.driver.switch_to.active_element.get_attribute("id") or "")
            if ident in wanted:
                reached.add(ident)
            if reached == wanted:
                break
        return reached
