"""Everything a server process needs, built from a data directory on embedded defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from otaguard.crypto.keys import load_or_create_signer, write_private
from otaguard.crypto.tls import TLSFiles, ensure_local_tls
from otaguard.fleet.anomaly import AnomalyPolicy
from otaguard.fleet.tally import WindowTally
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.store import IdentityStore
from otaguard.repo.online import OnlineRepository
from otaguard.server.edge_limits import EdgeLimits
from otaguard.server.push import NoPush
from otaguard.server.push_settings import PushSettings
from otaguard.server.refusals import DeviceRefusals, RefusalLog
from otaguard.store.blobs import BlobStore, LocalBlobStore
from otaguard.store.database import SqlMetadataStore, Store
from otaguard.store.transfers import TransferTally

PASSPHRASE_ENV = "OTAGUARD_ONLINE_KEY_PASSPHRASE"
ADMIN_TOKEN_ENV = "OTAGUARD_ADMIN_TOKEN"
MAX_ARTIFACT_BYTES = 4 << 30
MAX_METADATA_BYTES = 8 << 20
#: most open download-tally buckets (about 0.6 KiB each); past it the oldest are dropped
DOWNLOAD_BUCKETS = 200_000


def read_or_create_secret(path: Path, env: str | None = None) -> str:
    """A secret from ``env`` if set, else from ``path`` (created 0600 with a random value)."""
    if env and os.environ.get(env):
        return os.environ[env]
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    write_private(path, value.encode())
    return value


def make_private_dir(path: Path) -> None:
    """``path`` exists and only its owner can list or enter it (0700): it holds the database
    (password hashes, tokens' digests), the online keys and the device CA."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def private_sqlite_file(db_url: str) -> None:
    """For a SQLite URL: create the database file 0600 before SQLite does (SQLite gives its
    -wal and -shm files the main file's mode), and take group and other rights from an
    existing one and its -wal/-shm."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix) or db_url == prefix or ":memory:" in db_url:
        return
    path = Path(db_url.removeprefix(prefix).split("?", 1)[0])
    if path.parent.is_dir():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)


AUDIT_KEY_FILE = "audit-mac.key"


def audit_key(data_dir: Path) -> bytes:
    """The key the audit log's entries are MACed with: a 0600 file in the data directory,
    outside the database (created on first use)."""
    return read_or_create_secret(data_dir / AUDIT_KEY_FILE).encode()


@dataclass
class ServerSettings:
    data_dir: Path
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    tls: TLSFiles | None = None
    max_artifact_bytes: int = MAX_ARTIFACT_BYTES
    poll_interval: int = 60
    extra_hostnames: list[str] = field(default_factory=list)
    keys_dir: Path | None = None
    tls_dir: Path | None = None
    # Behind a reverse proxy: trust X-Forwarded-For/-Proto from these addresses only.
    proxy_headers: bool = False
    forwarded_allow_ips: str | None = None
    # Device identity (docs/SECURITY.md): the device CA directory (default DATA/device-ca);
    # bearer device credentials as a fallback for deployments without mTLS; a header carrying
    # the client certificate (URL-encoded PEM) believed only from these proxy addresses.
    device_ca_dir: Path | None = None
    device_bearer_fallback: bool = True
    client_cert_header: str | None = None
    client_cert_proxies: list[str] = field(default_factory=list)
    # Check-ins answered by the lean ASGI layer (server/checkin.py) rather than the framework
    # route; same answers, a fraction of the cost per request.
    lean_checkin: bool = True
    access_log: bool = True
    # Revocations are checked per request against an in-memory set of revoked serials,
    # re-read from the database at most this often (0: on every request); a revocation made
    # through another server process counts here within this many seconds.
    revocation_refresh_seconds: float = 1.0
    # Limits on what one client can make the listener hold (docs/SECURITY.md, "Limits").
    edge: EdgeLimits = field(default_factory=EdgeLimits)
    # Phased rollouts: how often the evaluator looks at running rollouts, and how long an
    # installed device may stay silent before it counts against the release.
    rollout_interval: float = 5.0
    rollout_silent_seconds: float = 900.0
    # New devices wait for an operator's accept before they are offered updates.
    require_device_acceptance: bool = False
    # Anomaly scans look at this many seconds before each pass; versions devices may run
    # without the repository having published them (factory images).
    anomaly_window_seconds: float = 3600.0
    factory_versions: list[str] = field(default_factory=list)
    # The anomaly rules' thresholds (fleet/anomaly.py; defaults in docs/DESIGN.md), and how
    # often the download tally is read (each read walks every downloader of the window: a
    # minute is plenty for a volume alert, and keeps that work off most monitoring passes).
    anomaly: AnomalyPolicy = field(default_factory=AnomalyPolicy)
    download_scan_seconds: float = 60.0
    # Alert webhooks: URLs, and a file holding the HMAC secret (docs/DESIGN.md, Rollouts).
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secret_file: Path | None = None
    # Push wake-ups over MQTT (server/push.py; None: devices only poll).
    mqtt: PushSettings | None = None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'server.db'}"


@dataclass
class ServerContext:
    settings: ServerSettings
    store: Store
    blobs: BlobStore
    repo: OnlineRepository
    director: CryptoSigner
    admin_token: str
    identity: IdentityStore = field(init=False)
    device_ca: DeviceAuthority = field(init=False)
    refusals: RefusalLog = field(init=False)
    device_refusals: DeviceRefusals = field(init=False)
    #: bytes served to devices, until recorded (``server/transfers.py``)
    transfer_tally: TransferTally = field(init=False)
    # Where routes and the evaluator note "this device has something new" (server/push.py);
    # the app's lifespan replaces it with the MQTT publisher when a broker is configured.
    push: NoPush = field(default_factory=NoPush)
    # Bytes served from /tuf/targets per claimed downloader and file (fleet/traffic.py), for
    # the anomaly scan; failed authentications per address are ``refusals.bursts``.
    downloads: WindowTally = field(init=False)
    downloads_read_at: float = field(init=False, default=float("-inf"))  # monotonic

    def __post_init__(self) -> None:
        self.identity = IdentityStore(self.store, audit_key=audit_key(self.settings.data_dir))
        self.store.rollouts.silent_after = self.settings.rollout_silent_seconds
        self.refusals = RefusalLog(self.identity.audit)
        # one bucket per downloader, file and minute: a fleet's hour of downloads fits
        self.downloads = WindowTally(bucket_seconds=60.0, max_keys=DOWNLOAD_BUCKETS)
        self.device_refusals = DeviceRefusals(self.refusals)
        self.transfer_tally = TransferTally()
        # Key material from the CA directory, state (tokens, certificates, CRL) in the
        # database; a file-based directory's issued.json/tokens.json are imported once.
        self.device_ca = DeviceAuthority.ensure(
            self.settings.device_ca_dir or self.settings.data_dir / "device-ca"
        ).attach(self.identity, refresh_seconds=self.settings.revocation_refresh_seconds)

    @classmethod
    def open(cls, settings: ServerSettings) -> ServerContext:
        data = settings.data_dir
        make_private_dir(data)
        private_sqlite_file(settings.db_url)
        store = Store(settings.db_url)
        store.migrate()
        keys = settings.keys_dir or data / "keys"
        passphrase = read_or_create_secret(keys / "passphrase", PASSPHRASE_ENV).encode()
        snapshot = load_or_create_signer(keys, "snapshot", passphrase)
        timestamp = load_or_create_signer(keys, "timestamp", passphrase)
        director = load_or_create_signer(keys, "director", passphrase)
        admin_token = read_or_create_secret(data / "admin-token", ADMIN_TOKEN_ENV)
        store.add_api_token("admin", admin_token)
        if settings.tls is None:
            hosts = ["localhost", "127.0.0.1", "::1", *settings.extra_hostnames]
            if settings.host not in hosts and settings.host not in ("0.0.0.0", "::"):
                hosts.append(settings.host)
            settings.tls = ensure_local_tls(settings.tls_dir or data / "tls", hosts)
        return cls(
            settings=settings,
            store=store,
            blobs=LocalBlobStore(data / "blobs"),
            repo=OnlineRepository(SqlMetadataStore(store), snapshot, timestamp),
            director=director,
            admin_token=admin_token,
        )

    def close(self) -> None:
        self.refusals.flush()
        self.store.close()
