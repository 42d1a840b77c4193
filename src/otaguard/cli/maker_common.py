"""Shared pieces of the maker's commands (``otaguard keys|repo|release``): the sub-apps, error
handling (exit code 2 and one line on stderr, never a traceback), options, and how keys,
passphrases and PINs are loaded. Secrets come from an environment variable named on the command
line or from an interactive prompt; they are never printed or logged.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from securesystemslib.signer import Key, Signer

from otaguard.crypto import keys as keyfiles
from otaguard.errors import KeyMaterialError, OTAGuardError
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import SignatureStatus

EXPIRY_WARNING = dt.timedelta(days=30)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

keys_app = typer.Typer(
    help="Maker signing keys: generate (file or PKCS#11 token), rotate, revoke.",
    no_args_is_help=True,
)
repo_app = typer.Typer(
    help="The maker's TUF repository: init, status, publish.", no_args_is_help=True
)
release_app = typer.Typer(
    help="Releases: add an image, sign (here or offline), import signatures.",
    no_args_is_help=True,
)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit code 2."""
    try:
        yield
    except OTAGuardError as exc:
        die(str(exc))
    except httpx.HTTPError as exc:
        die(f"server unreachable: {exc}")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        die(f"{exc.strerror or exc}{where}")


def die(message: str) -> None:
    first = " ".join(message.split())
    err_console.print(f"error: {first}", markup=False, highlight=False)
    raise typer.Exit(code=2)


# -- shared options and helpers ---------------------------------------------------------------
RepoArg = Annotated[Path, typer.Argument(help="Maker repository directory.")]
PassphraseEnv = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        metavar="VAR",
        help="Read the key passphrase from environment variable VAR (else: prompt).",
    ),
]
Pkcs11Lib = Annotated[
    str | None,
    typer.Option("--pkcs11-lib", metavar="SO", help="PKCS#11 module (default: $PYKCS11LIB)."),
]
PinEnv = Annotated[
    str,
    typer.Option(
        "--pin-env",
        metavar="VAR",
        help="Environment variable holding the token PIN (prompted if unset).",
    ),
]
DEFAULT_PIN_ENV = "OTAGUARD_PKCS11_PIN"


def open_repo(path: Path) -> MakerRepository:
    return MakerRepository(path)


def read_passphrase(env: str | None, *, what: str, confirm: bool = False) -> bytes:
    if env:
        value = os.environ.get(env)
        if not value:
            raise KeyMaterialError(f"passphrase variable ${env} is not set")
        return value.encode()
    value = typer.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm)
    return str(value).encode()


def token_pin(env: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(typer.prompt("Token user PIN", hide_input=True))


def load_keys(paths: list[Path]) -> list[Key]:
    return [keyfiles.load_public_key(p) for p in paths]


def load_signer(
    key: Path | None, pkcs11: str | None, passphrase_env: str | None, lib: str | None, pin_env: str
) -> Signer:
    if (key is None) == (pkcs11 is None):
        raise KeyMaterialError("give exactly one of --key KEYFILE or --pkcs11 REF")
    if key is not None:
        return keyfiles.load_signer_file(key, read_passphrase(passphrase_env, what=str(key)))
    assert pkcs11 is not None
    from otaguard.crypto import hsm

    pin = token_pin(pin_env)
    if pkcs11.startswith("hsm:"):
        from urllib import parse

        uri = parse.urlparse(pkcs11)
        label = dict(parse.parse_qsl(uri.query)).get("label")
        if not label:
            raise KeyMaterialError("a token URI must name its token: hsm:<id>?label=<label>")
        key_id = int(uri.path) if uri.path.isdigit() else hsm.DEFAULT_KEY_ID
        ref = hsm.import_token_key(label, pin, key_id=key_id, lib=lib)
    else:
        ref = hsm.TokenKey.load(Path(pkcs11))
    return hsm.token_signer(ref, pin, lib)


def short_keyid(keyid: str) -> str:
    return keyid[:12]


def status_line(st: SignatureStatus) -> str:
    by = f" (by {st.judged_by})" if st.judged_by else ""
    state = "valid" if st.valid else "below threshold"
    return f"{st.role} v{st.version}{by}: {len(st.signed_by)}/{st.threshold} signatures, {state}"


# -- keys -------------------------------------------------------------------------------------
