"""The server's certificate and key, reloaded without a restart.

An operator renews the certificate (certbot, an internal CA) by replacing the two files; the
running server must present the new one without dropping its connections. OpenSSL builds each
new TLS connection from the listening context, so loading the new pair into that same context
(``SSLContext.load_cert_chain``) is enough: new handshakes get the new certificate, open
connections keep theirs. ``CertificateReloader`` does that when the files' modification times
change (checked every ``interval`` seconds on a daemon thread) and on ``SIGHUP``. A pair that
does not load (a half-written renewal, a key that does not match) is logged and the old one
stays in use; the next change is tried again.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class CertificateReloader:
    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path, interval: float = 5.0):
        self.context = context
        self.cert = cert
        self.key = key
        self.interval = interval
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stamp(self) -> tuple[int, int]:
        try:
            return self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns
        except OSError:
            return (0, 0)

    def check(self, *, force: bool = False) -> bool:
        """Load the pair if the files changed (or ``force``); True when a new pair is in use."""
        stamp = self._stamp()
        if stamp == self._seen and not force:
            return False
        try:
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS certificate not reloaded, keeping the current one: %s", exc)
            return False
        self._seen = stamp
        log.info("TLS certificate reloaded from %s", self.cert)
        return True

    def start(self, *, on_sighup: bool = False) -> CertificateReloader:
        """Watch the files on a daemon thread; with ``on_sighup`` (main thread only), also
        reload on SIGHUP."""
        self._thread = threading.Thread(target=self._watch, name="otaguard-tls-reload", daemon=True)
        self._thread.start()
        if on_sighup and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda _s, _f: self.check(force=True))
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
