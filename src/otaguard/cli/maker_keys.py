"""``otaguard keys``: generate maker keys (file or PKCS#11 token), rotate and revoke them (runs on
the maker's offline machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otaguard.cli.maker_common import (
    DEFAULT_PIN_ENV,
    PassphraseEnv,
    PinEnv,
    Pkcs11Lib,
    cli_errors,
    console,
    keys_app,
    load_keys,
    open_repo,
    read_passphrase,
    status_line,
    token_pin,
)
from otaguard.crypto import keys as keyfiles
from otaguard.errors import KeyMaterialError
from otaguard.repo.maker import MakerRepository


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Argument(help="Key name: files NAME.key / NAME.pub.json.")],
    key_type: Annotated[
        keyfiles.KeyType | None,
        typer.Option("--type", help="ed25519 (default) or ecdsa-p256 (tokens: always P-256)."),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the key.")] = Path(),
    passphrase_env: PassphraseEnv = None,
    pkcs11: Annotated[
        str | None,
        typer.Option(
            "--pkcs11",
            metavar="TOKEN_LABEL",
            help="Generate the key inside this PKCS#11 token instead of a file.",
        ),
    ] = None,
    key_id: Annotated[int, typer.Option("--key-id", help="Object id in the token.")] = 2,
    pkcs11_lib: Pkcs11Lib = None,
    pin_env: PinEnv = DEFAULT_PIN_ENV,
) -> None:
    """Generate a signing key: an encrypted key file, or a key inside a PKCS#11 token.

    Writes NAME.pub.json (the TUF public key, give it to `repo init` or `keys rotate`) and
    either NAME.key (PKCS#8, encrypted with the passphrase) or NAME.hsm.json (where the token
    key is; the private key never leaves the token).
    """
    with cli_errors():
        if not name or "/" in name or name.startswith("."):
            raise KeyMaterialError(f"invalid key name {name!r}")
        pub_path = directory / f"{name}.pub.json"
        if pub_path.exists():
            raise KeyMaterialError(f"refusing to overwrite existing key {pub_path}")
        if pkcs11 is not None:
            from otaguard.crypto import hsm

            if key_type is keyfiles.KeyType.ED25519:
                raise KeyMaterialError("PKCS#11 token keys are ECDSA P-256 (--type ecdsa-p256)")
            ref = hsm.generate_in_token(
                pkcs11, token_pin(pin_env), key_id=key_id, key_label=name, lib=pkcs11_lib
            )
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{name}.hsm.json").write_text(ref.to_json())
            pub_path.write_text(keyfiles.public_key_json(ref.public_key))
            console.print(f"generated ecdsa-p256 key {ref.public_key.keyid} in token {pkcs11!r}")
            console.print(f"token reference: {directory / f'{name}.hsm.json'}")
        else:
            kt = key_type or keyfiles.KeyType.ED25519
            passphrase = read_passphrase(passphrase_env, what=f"new key {name}", confirm=True)
            signer = keyfiles.generate_signer(kt)
            files = keyfiles.save_keypair(signer, directory, name, passphrase)
            console.print(f"generated {kt.value} key {signer.public_key.keyid}")
            console.print(f"private (encrypted): {files.private}")
        console.print(f"public: {pub_path}")


@keys_app.command("rotate")
def keys_rotate(
    role: Annotated[str, typer.Argument(help="root, targets, snapshot or timestamp.")],
    repo: Annotated[Path, typer.Option("--repo", help="Maker repository directory.")],
    new_key: Annotated[
        list[Path] | None, typer.Option("--new-key", help="Public key file to add (repeatable).")
    ] = None,
    remove_key: Annotated[
        list[str] | None,
        typer.Option("--remove-key", help="Key id (or 8+ char prefix) to remove (repeatable)."),
    ] = None,
    threshold: Annotated[
        int | None, typer.Option("--threshold", help="New threshold for the role.")
    ] = None,
) -> None:
    """Change a role's keys in a new root version (to be signed by old AND new root keys)."""
    from otaguard.repo.rotation import rotate_role

    with cli_errors():
        r = open_repo(repo)
        result = rotate_role(
            r,
            role,
            add=load_keys(new_key or []),
            remove=remove_key or [],
            threshold=threshold,
        )
        _report_rotation(r, result.root_version, result.targets_version)


@keys_app.command("revoke")
def keys_revoke(
    keyid: Annotated[str, typer.Argument(help="Compromised key id (or 8+ char prefix).")],
    repo: Annotated[Path, typer.Option("--repo", help="Maker repository directory.")],
    new_key: Annotated[
        list[Path] | None,
        typer.Option("--new-key", help="Replacement public key for the key's roles."),
    ] = None,
) -> None:
    """Remove a compromised key from every role in a new root version."""
    from otaguard.repo.rotation import revoke

    with cli_errors():
        r = open_repo(repo)
        result = revoke(r, keyid, load_keys(new_key or []))
        _report_rotation(r, result.root_version, result.targets_version)


def _report_rotation(r: MakerRepository, root_version: int, targets_version: int | None) -> None:
    for st in r.root_status():
        console.print(status_line(st))
    console.print(
        f"root v{root_version} staged: sign it with `otaguard release sign {r.path} --role root`"
        " using a threshold of the previous AND of the new root keys"
    )
    if targets_version is not None:
        console.print(
            f"targets v{targets_version} staged: sign it with the remaining/new targets keys"
        )


# -- repo -------------------------------------------------------------------------------------
