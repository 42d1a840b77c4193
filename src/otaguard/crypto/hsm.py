"""PKCS#11 keys (HSM, smart card, SoftHSM2): generated in the token, never leaving it.

Signing goes through securesystemslib's ``HSMSigner`` (python-pkcs11 underneath), so a token
key is a TUF ``Signer`` like a key file. ``HSMSigner`` does ECDSA P-256/P-384 only, which is
also what most tokens and secure elements offer.

A token key is referred to by a small JSON file (``NAME.hsm.json``) holding its
securesystemslib URI ``hsm:<id>?label=<token label>`` and its public key; no secret is in it.
The PIN is read from an environment variable (``OTAGUARD_PKCS11_PIN`` unless told otherwise)
or asked interactively by the CLI, passed only to the PKCS#11 library and never logged.
The PKCS#11 module (``.so``) is named by ``--pkcs11-lib`` or ``PYKCS11LIB``, the variable
securesystemslib reads.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib import parse

from securesystemslib.signer import HSMSigner, SSlibKey

from otaguard.crypto.keys import key_from_dict
from otaguard.errors import KeyMaterialError

LIB_ENV = "PYKCS11LIB"
PIN_ENV = "OTAGUARD_PKCS11_PIN"
DEFAULT_KEY_ID = 2
SOFTHSM_LIBS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def clear_openssl_errors() -> None:
    """Empty this thread's OpenSSL error queue after PKCS#11 calls.

    A PKCS#11 module linked to OpenSSL may leave errors in the calling thread's queue (SoftHSM2
    leaves ``ENGINE: no such engine`` when it initializes); CPython's ``ssl`` (3.11) can then
    report that stale error for the thread's next TLS read, failing an unrelated request."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("crypto")
    if name is None:  # pragma: no cover - no shared libcrypto
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).ERR_clear_error()


def find_softhsm() -> str | None:
    """Path of the SoftHSM2 PKCS#11 module if it is installed."""
    return next((p for p in SOFTHSM_LIBS if Path(p).is_file()), None)


def pkcs11_library(path: str | None = None) -> str:
    """The PKCS#11 module to use: ``path``, else ``$PYKCS11LIB``; exported for HSMSigner."""
    lib = path or os.environ.get(LIB_ENV)
    if not lib:
        raise KeyMaterialError(f"no PKCS#11 module: pass --pkcs11-lib or set {LIB_ENV}")
    if not Path(lib).is_file():
        raise KeyMaterialError(f"PKCS#11 module {lib} does not exist")
    os.environ[LIB_ENV] = lib
    return lib


def pin_from_env(var: str = PIN_ENV) -> str:
    pin = os.environ.get(var)
    if not pin:
        raise KeyMaterialError(f"the token PIN is read from ${var}, which is not set")
    return pin


@dataclass(frozen=True)
class TokenKey:
    """Where a token key lives (securesystemslib URI) and its public half."""

    uri: str
    public_key: SSlibKey

    @property
    def token_label(self) -> str | None:
        return dict(parse.parse_qsl(parse.urlparse(self.uri).query)).get("label")

    def to_json(self) -> str:
        pub = {"keyid": self.public_key.keyid, **self.public_key.to_dict()}
        return json.dumps({"uri": self.uri, "public_key": pub}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TokenKey:
        try:
            data: Any = json.loads(text)
            uri = str(data["uri"])
            pub = data["public_key"]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyMaterialError(f"not a token key reference: {exc}") from exc
        if parse.urlparse(uri).scheme != HSMSigner.SCHEME:
            raise KeyMaterialError(f"token key URI must start with 'hsm:', got {uri!r}")
        return cls(uri, key_from_dict(pub))

    @classmethod
    def load(cls, path: Path) -> TokenKey:
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeyMaterialError(f"cannot read token key reference {path}: {exc}") from exc
        return cls.from_json(text)


def _token(lib: str, token_label: str) -> Any:
    import pkcs11
    from pkcs11.exceptions import MultipleTokensReturned, NoSuchToken

    try:
        return pkcs11.lib(lib).get_token(token_label=token_label)
    except NoSuchToken as exc:
        raise KeyMaterialError(f"no PKCS#11 token labelled {token_label!r}") from exc
    except MultipleTokensReturned as exc:
        raise KeyMaterialError(f"several PKCS#11 tokens labelled {token_label!r}") from exc


def generate_in_token(
    token_label: str,
    pin: str,
    *,
    key_id: int = DEFAULT_KEY_ID,
    key_label: str = "otaguard",
    lib: str | None = None,
) -> TokenKey:
    """Generate an ECDSA P-256 key pair inside the token; the private key is created
    sensitive and non-extractable, so it can sign but never be read out."""
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import NoSuchKey, PKCS11Error
    from pkcs11.util import biginteger
    from pkcs11.util.ec import encode_named_curve_parameters

    if not 0 < key_id < 1 << 31:
        raise KeyMaterialError("token key id must be a positive integer")
    library = pkcs11_library(lib)
    token = _token(library, token_label)
    id_bytes = biginteger(key_id)
    try:
        with token.open(rw=True, user_pin=pin) as session:
            try:
                session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=id_bytes)
            except NoSuchKey:
                pass
            else:
                raise KeyMaterialError(
                    f"token {token_label!r} already holds a key with id {key_id}; "
                    "refusing to create a second one"
                )
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            params.generate_keypair(
                id=id_bytes,
                label=key_label,
                store=True,
                public_template={Attribute.VERIFY: True},
                private_template={
                    Attribute.SIGN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )
    except PKCS11Error as exc:
        raise KeyMaterialError(f"token {token_label!r}: {type(exc).__name__} {exc}") from exc
    finally:
        clear_openssl_errors()
    return import_token_key(token_label, pin, key_id=key_id, lib=library)


def import_token_key(
    token_label: str, pin: str, *, key_id: int = DEFAULT_KEY_ID, lib: str | None = None
) -> TokenKey:
    """Reference and public key of an existing token key (to write its ``.hsm.json``)."""
    from pkcs11.exceptions import PKCS11Error

    pkcs11_library(lib)
    try:
        uri, key = HSMSigner.import_(key_id, token_label, secrets_handler=lambda _msg: pin)
    except (ValueError, PKCS11Error) as exc:
        raise KeyMaterialError(f"token {token_label!r}: {exc}") from exc
    finally:
        clear_openssl_errors()
    return TokenKey(uri, key)


class TokenSigner(HSMSigner):
    """``HSMSigner`` whose failures (wrong PIN, missing token or key) are ``KeyMaterialError``."""

    def sign(self, payload: bytes) -> Any:
        from pkcs11.exceptions import PKCS11Error

        try:
            return super().sign(payload)
        except PKCS11Error as exc:
            raise KeyMaterialError(f"token signing failed: {type(exc).__name__}") from exc
        except ValueError as exc:
            raise KeyMaterialError(f"token signing failed: {exc}") from exc
        finally:
            clear_openssl_errors()


def token_signer(ref: TokenKey, pin: str, lib: str | None = None) -> TokenSigner:
    """A signer for ``ref``; the PIN is handed to the token at each signature and kept nowhere
    else."""
    pkcs11_library(lib)
    uri = parse.urlparse(ref.uri)
    key_id = int(uri.path) if uri.path else DEFAULT_KEY_ID
    return TokenSigner(key_id, ref.public_key, lambda _msg: pin, ref.token_label)
