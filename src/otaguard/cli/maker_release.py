"""``otaguard release``: add an image as a signed target, sign roles here or offline (detached
signatures), import signatures, sign every delegated role a key may sign.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from otaguard.cli.maker_common import (
    DEFAULT_PIN_ENV,
    PassphraseEnv,
    PinEnv,
    Pkcs11Lib,
    RepoArg,
    cli_errors,
    console,
    load_signer,
    open_repo,
    release_app,
    short_keyid,
    status_line,
)
from otaguard.errors import RepositoryError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import ROOT, TARGETS

DeltaFrom = Annotated[
    list[str] | None,
    typer.Option(
        "--delta-from",
        metavar="VERSION",
        help="Also build a delta from this earlier release of the same hardware (repeatable); "
        "skipped when it does not pay.",
    ),
]


def _split(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return tuple(out)


@release_app.command("add")
def release_add(
    image: Annotated[Path, typer.Argument(help="Firmware image file.")],
    version: Annotated[str, typer.Option("--version", help="Release version, e.g. 2.1.0.")],
    hardware: Annotated[
        list[str], typer.Option("--hardware", help="Hardware type(s): T[,T] or repeated.")
    ],
    security_version: Annotated[
        int,
        typer.Option("--security-version", help="Anti-rollback level (devices never go below)."),
    ],
    repo: Annotated[Path, typer.Option("--repo", help="Maker repository directory.")] = Path(),
    name: Annotated[
        str | None,
        typer.Option("--name", help="Target name (default: HARDWARE/IMAGE-FILE-NAME)."),
    ] = None,
    notes: Annotated[str, typer.Option("--notes", help="Release notes.")] = "",
    sbom: Annotated[
        Path | None, typer.Option("--sbom", help="CycloneDX JSON SBOM (its sha256 is signed).")
    ] = None,
    fixes: Annotated[
        list[str] | None, typer.Option("--fixes", help="CVE ids fixed: CVE-..[,CVE-..].")
    ] = None,
    delta_from: DeltaFrom = None,
) -> None:
    """Add an image as a new target; targets gets a new version that needs signing."""
    from otaguard.repo.sbom import cyclonedx_sha256

    with cli_errors():
        r = open_repo(repo)
        hw = _split(hardware)
        sbom_sha = cyclonedx_sha256(sbom) if sbom is not None else None
        info = ReleaseInfo(
            version=version,
            hardware=hw,
            security_version=security_version,
            notes=notes,
            sbom_sha256=sbom_sha,
            fixes=_split(fixes),
        )
        target_name = name or (f"{hw[0]}/{image.name}" if hw else image.name)
        target = r.add_target(image, target_name, info)
        st = next(s for s in r.status() if s.role == TARGETS)
        console.print(
            f"added {target.path} ({target.length} bytes, sha256 {target.hashes['sha256'][:16]}…)"
        )
        console.print(f"targets v{st.version} needs {st.threshold} signature(s)")
        if delta_from:
            _add_deltas(r, target.path, delta_from)


@release_app.command("delta")
def release_delta(
    target: Annotated[str, typer.Argument(help="Target name of the new release.")],
    delta_from: DeltaFrom,
    repo: Annotated[Path, typer.Option("--repo", help="Maker repository directory.")] = Path(),
) -> None:
    """Add delta targets to an added release from earlier releases of the same hardware."""
    with cli_errors():
        if not delta_from:
            raise RepositoryError("name at least one earlier release with --delta-from")
        _add_deltas(open_repo(repo), target, delta_from)


def _add_deltas(r: MakerRepository, target_name: str, versions: list[str]) -> None:
    from otaguard.repo.maker_deltas import add_deltas

    outcomes = add_deltas(r, target_name, list(_split(versions)))
    for outcome in outcomes:
        console.print(outcome.message)
    for role in sorted({o.role for o in outcomes if o.role is not None}):
        print_role_status(r, role)


@release_app.command("sign")
def release_sign(
    repo: RepoArg,
    key: Annotated[
        Path | None, typer.Option("--key", help="Encrypted private key file (NAME.key).")
    ] = None,
    pkcs11: Annotated[
        str | None,
        typer.Option(
            "--pkcs11",
            metavar="REF",
            help="Token key: NAME.hsm.json from `keys generate --pkcs11`, or hsm:ID?label=L.",
        ),
    ] = None,
    role: Annotated[
        str, typer.Option("--role", help="targets (default), root, or a delegated role.")
    ] = TARGETS,
    export_signature: Annotated[
        Path | None,
        typer.Option(
            "--export-signature",
            metavar="OUT",
            help="Write a detached signature to OUT instead of changing REPO (offline signing).",
        ),
    ] = None,
    passphrase_env: PassphraseEnv = None,
    pkcs11_lib: Pkcs11Lib = None,
    pin_env: PinEnv = DEFAULT_PIN_ENV,
) -> None:
    """Add one signature to targets (or root, or a delegated role); valid at threshold."""
    from otaguard.repo.detached import make_detached

    with cli_errors():
        r = open_repo(repo)
        if role not in (ROOT, TARGETS) and not r.has_role(role):
            raise RepositoryError(
                f"--role must be root, targets or a delegated role of this repository, not {role!r}"
            )
        signer = load_signer(key, pkcs11, passphrase_env, pkcs11_lib, pin_env)
        if export_signature is not None:
            if export_signature.exists():
                raise RepositoryError(f"refusing to overwrite {export_signature}")
            detached = make_detached(r, role, signer)
            export_signature.write_text(json.dumps(detached, indent=2, sort_keys=True))
            console.print(
                f"signed {role} v{detached['version']} with {short_keyid(signer.public_key.keyid)}; "
                f"detached signature in {export_signature}"
            )
            return
        r.sign(role, signer)
        print_role_status(r, role)


@release_app.command("import-signature")
def release_import_signature(
    repo: RepoArg,
    sigfile: Annotated[Path, typer.Argument(help="Detached signature from `--export-signature`.")],
) -> None:
    """Import a signature made offline over a copy of this repository's metadata."""
    from otaguard.repo.detached import import_detached, parse_detached

    with cli_errors():
        r = open_repo(repo)
        data = parse_detached(sigfile.read_text())
        import_detached(r, data)
        print_role_status(r, str(data["role"]))


def print_role_status(r: MakerRepository, role: str) -> None:
    for st in r.status():
        if st.role == role:
            console.print(status_line(st))


@release_app.command("sign-delegated")
def release_sign_delegated(
    repo: RepoArg,
    key: Annotated[Path, typer.Option("--key", help="Encrypted private key file (NAME.key).")],
    passphrase_env: PassphraseEnv = None,
) -> None:
    """Sign every delegated role (e.g. all hashed bins) that this key signs and has not signed."""
    from otaguard.repo.maker_delegation import sign_delegated

    with cli_errors():
        r = open_repo(repo)
        signer = load_signer(key, None, passphrase_env, None, DEFAULT_PIN_ENV)
        done = sign_delegated(r, signer)
        if not done:
            raise RepositoryError(f"key {short_keyid(signer.public_key.keyid)} has nothing to sign")
        valid = sum(1 for st in done if st.valid)
        console.print(f"signed {len(done)} role(s); {valid} now at threshold")
