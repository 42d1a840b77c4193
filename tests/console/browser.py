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
