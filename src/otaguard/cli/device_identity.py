"""``otaguard ca`` (the device CA: init, issue, token, revoke, crl) and ``otaguard device
enroll`` (the device side: own key, CSR, one-time token, certificate)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from otaguard.cli.maker import cli_errors
from otaguard.errors import AuthError, ConfigError
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.device_keys import KeyType, load_or_create_key, make_csr

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ca_app = typer.Typer(
    help="The device certificate authority: init, issue, token, revoke, crl.",
    no_args_is_help=True,
)
device_app = typer.Typer(help="Device identity: enroll with the server.", no_args_is_help=True)

CADir = Annotated[Path, typer.Option("--dir", help="Device CA directory (server: DATA/device-ca)")]
AuditDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The server's data directory, whose database holds the CA's tokens, "
        "certificates and revocations and gets the audit entry "
        "(default: the CA directory's parent when it holds server.db).",
    ),
]
AuditDatabase = Annotated[
    str | None, typer.Option("--database", help="SQLAlchemy URL of the server's database.")
]


def _database_url(directory: Path, data_dir: Path | None, database: str | None) -> str | None:
    """The server database a ``ca`` command uses: ``--database``, ``--data-dir``'s, or
    ``DATA/server.db`` next to ``DATA/device-ca``; None when there is none."""
    from otaguard.server.context import ServerSettings

    if data_dir is None and database is None:
        parent = directory.resolve().parent
        if not (parent / "server.db").exists():
            return None
        data_dir = parent
    return ServerSettings(data_dir=data_dir or Path("."), database_url=database).db_url


def _audit(
    directory: Path,
    data_dir: Path | None,
    database: str | None,
    *,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    """Write what ``ca init`` did to the server's audit log as ``cli:<login>``, when a server
    database is known; say so when there is none. Never given secrets."""
    from otaguard.cli.identity import local_actor
    from otaguard.identity.store import IdentityStore
    from otaguard.store.database import Store

    url = _database_url(directory, data_dir, database)
    if url is None:
        err_console.print("no server database given (--data-dir/--database): not audited")
        return
    store = Store(url)
    try:
        store.migrate()
        IdentityStore(store).audit(actor=local_actor(), action=action, target=target, detail=detail)
    finally:
        store.close()


def _open(directory: Path) -> DeviceAuthority:
    authority = DeviceAuthority(directory)
    if not authority.initialized:
        raise ConfigError(f"no device CA in {directory}: run `otaguard ca init` first")
    return authority


@contextmanager
def _with_state(
    directory: Path, data_dir: Path | None, database: str | None
) -> Iterator[tuple[DeviceAuthority, Callable[..., None]]]:
    """The CA in ``directory`` attached to the server database (where tokens, issued
    certificates and revocations live), and a function auditing to it as ``cli:<login>``."""
    from otaguard.cli.identity import local_actor
    from otaguard.identity.store import IdentityStore
    from otaguard.store.database import Store

    authority = _open(directory)
    url = _database_url(directory, data_dir, database)
    if url is None:
        raise ConfigError(
            "the device CA's enrollment tokens, issued certificates and revocations live in "
            "the server database: give --data-dir DATA or --database URL (or keep the CA in "
            "DATA/device-ca next to DATA/server.db)"
        )
    store = Store(url)
    try:
        store.migrate()
        identity = IdentityStore(store)
        authority.attach(identity, refresh_seconds=0)

        def audit(*, action: str, target: str, detail: dict[str, Any]) -> None:
            identity.audit(actor=local_actor(), action=action, target=target, detail=detail)

        yield authority, audit
    finally:
        store.close()


@ca_app.command("init")
def ca_init(
    directory: CADir,
    root_key: Annotated[
        Path, typer.Option(help="Where to write the root CA key (move it offline afterwards)")
    ],
    data_dir: AuditDataDir = None,
    database: AuditDatabase = None,
) -> None:
    """Create the offline root CA and the online issuing intermediate."""
    with cli_errors():
        authority = DeviceAuthority.init(directory, root_key)
        inter = authority.intermediate()
        _audit(
            directory,
            data_dir,
            database,
            action="ca.init",
            target=str(authority.dir),
            detail={
                "intermediate": format(inter.serial_number, "x"),
                "not_after": inter.not_valid_after_utc.isoformat(),
            },
        )
        console.print(f"device CA in {authority.dir}; root key written to {root_key}")
        console.print("move the root key offline: the server only needs the intermediate")


@ca_app.command("issue")
def ca_issue(
    directory: CADir,
    csr: Annotated[Path, typer.Option(help="The device's PEM CSR")],
    device: Annotated[str, typer.Option(help="Device id")],
    hardware: Annotated[str, typer.Option(help="Hardware type")],
    out: Annotated[Path, typer.Option(help="Where to write the certificate (PEM)")],
    data_dir: AuditDataDir = None,
    database: AuditDatabase = None,
) -> None:
    """Issue a device certificate from a CSR (manual enrollment)."""
    with cli_errors(), _with_state(directory, data_dir, database) as (authority, audit):
        cert = authority.issue(csr.read_bytes(), device_id=device, hardware=hardware)
        out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        audit(
            action="ca.issue",
            target=device,
            detail={
                "serial": str(cert.serial_number),
                "hardware": hardware,
                "not_after": cert.not_valid_after_utc.isoformat(),
            },
        )
        console.print(f"issued serial {cert.serial_number} to {device} -> {out}")


@ca_app.command("token")
def ca_token(
    directory: CADir,
    device: Annotated[str, typer.Option(help="Device id the token enrolls")],
    hardware: Annotated[str, typer.Option(help="Hardware type")],
    ttl_hours: Annotated[float, typer.Option(help="Validity in hours")] = 24.0,
    data_dir: AuditDataDir = None,
    database: AuditDatabase = None,
) -> None:
    """Create a one-time factory enrollment token (printed once; only its hash is kept)."""
    from otaguard.cli.identity import local_actor
    from otaguard.identity.store import token_fingerprint

    with cli_errors(), _with_state(directory, data_dir, database) as (authority, audit):
        token = authority.create_token(
            device, hardware, dt.timedelta(hours=ttl_hours), created_by=local_actor()
        )
        audit(
            action="enrollment.token.create",
            target=device,
            detail={
                "hardware": hardware,
                "enrollment_token": token_fingerprint(token),
                "ttl_hours": str(ttl_hours),
            },
        )
        typer.echo(token)


@ca_app.command("revoke")
def ca_revoke(
    directory: CADir,
    device: Annotated[str | None, typer.Option(help="Revoke every certificate of a device")] = None,
    serial: Annotated[int | None, typer.Option(help="Revoke one certificate")] = None,
    data_dir: AuditDataDir = None,
    database: AuditDatabase = None,
) -> None:
    """Revoke certificates and re-sign the CRL; refused from the device's next request."""
    with cli_errors():
        if (device is None) == (serial is None):
            raise ConfigError("give exactly one of --device or --serial")
    with cli_errors(), _with_state(directory, data_dir, database) as (authority, audit):
        new = authority.revoke(serial=serial, device_id=device, reason="revoked with the CLI")
        audit(
            action="device.certificate.revoke",
            target=device or str(serial),
            detail={"revoked": [str(s) for s in new]},
        )
        console.print(f"revoked {len(new)} certificate(s): {', '.join(map(str, new)) or '-'}")


@ca_app.command("crl")
def ca_crl(
    directory: CADir,
    refresh: Annotated[bool, typer.Option(help="Re-sign with a new validity window")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the PEM CRL here")] = None,
    data_dir: AuditDataDir = None,
    database: AuditDatabase = None,
) -> None:
    """Print (or, with the server database, refresh) the CRL signed by the intermediate."""
    with cli_errors():
        authority = _open(directory)
        if refresh:
            with _with_state(directory, data_dir, database) as (attached, _audit_fn):
                attached.refresh_crl()
        if out:
            out.write_bytes(authority.crl_pem())
        else:
            typer.echo(authority.crl_pem().decode())


@device_app.command("enroll")
def device_enroll(
    server: Annotated[str, typer.Option(help="Server URL, https://host:port")],
    server_ca: Annotated[Path, typer.Option(help="Pinned server TLS CA (PEM)")],
    device: Annotated[str, typer.Option(help="This device's id")],
    token: Annotated[str, typer.Option(help="One-time factory enrollment token")],
    key: Annotated[Path, typer.Option(help="Device key file (created 0600 if missing)")],
    cert_out: Annotated[Path, typer.Option(help="Where to write the device certificate")],
    key_type: Annotated[str, typer.Option(help="ecdsa-p256 or ed25519")] = "ecdsa-p256",
) -> None:
    """Make (or reuse) this device's key, send a CSR with the token, store the certificate."""
    from otaguard.identity.enroll import enroll

    with cli_errors():
        if key_type not in ("ecdsa-p256", "ed25519"):
            raise ConfigError("--key-type must be ecdsa-p256 or ed25519")
        kt: KeyType = "ed25519" if key_type == "ed25519" else "ecdsa-p256"
        private = load_or_create_key(key, kt)
        try:
            pem = enroll(server, server_ca, device, token, make_csr(private, device))
        except httpx.HTTPStatusError as exc:
            raise AuthError(f"enrollment refused: {exc.response.text}") from None
        cert_out.write_text(pem)
        console.print(f"enrolled {device}; certificate -> {cert_out}")


@device_app.command("manifest-key")
def device_manifest_key(
    token_label: Annotated[str, typer.Option(help="Label of the PKCS#11 token")],
    pkcs11_lib: Annotated[
        str | None,
        typer.Option("--pkcs11-lib", metavar="SO", help="PKCS#11 module (default: $PYKCS11LIB)"),
    ] = None,
    key_id: Annotated[int, typer.Option(help="CKA_ID of the key in the token")] = 2,
    pin_env: Annotated[
        str, typer.Option(help="Environment variable holding the token PIN")
    ] = "OTAGUARD_PKCS11_PIN",
    existing: Annotated[
        bool, typer.Option("--existing", help="Print the public key of a key already there")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the public key JSON here")] = None,
) -> None:
    """Generate this device's manifest signing key inside a PKCS#11 token (ECDSA P-256,
    sensitive, non-extractable) and print its public key (JSON) to register the device with;
    point the agent at it with [agent.manifest_key_pkcs11]."""
    import json

    from otaguard.agent.config import Pkcs11Key
    from otaguard.agent.manifest_key import token_pin
    from otaguard.crypto import hsm

    with cli_errors():
        pin = token_pin(Pkcs11Key(token_label, pkcs11_lib, key_id, pin_env))
        if existing:
            ref = hsm.import_token_key(token_label, pin, key_id=key_id, lib=pkcs11_lib)
        else:
            ref = hsm.generate_in_token(
                token_label, pin, key_id=key_id, key_label="otaguard-manifest", lib=pkcs11_lib
            )
        pub = {"keyid": ref.public_key.keyid, **ref.public_key.to_dict()}
        text = json.dumps(pub, indent=1, sort_keys=True)
        if out is not None:
            out.write_text(text + "\n")
        typer.echo(text)
