"""The maker's commands: ``otaguard keys``, ``otaguard repo`` and ``otaguard release``.

Everything here runs on the maker's (offline) machine except ``repo publish`` and fetching the
server's online keys. Bad input ends with exit code 2 and one line on stderr, never a traceback.
Secrets (passphrases, PINs) come from an environment variable named on the command line or from
an interactive prompt; they are never printed or logged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from securesystemslib.signer import Key, Signer

from otaguard.crypto import keys as keyfiles
from otaguard.errors import KeyMaterialError, OTAGuardError, RepositoryError
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, SignatureStatus, utcnow

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
        _die(str(exc))
    except httpx.HTTPError as exc:
        _die(f"server unreachable: {exc}")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _die(f"{exc.strerror or exc}{where}")


def _die(message: str) -> None:
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


def _open(path: Path) -> MakerRepository:
    return MakerRepository(path)


def _passphrase(env: str | None, *, what: str, confirm: bool = False) -> bytes:
    if env:
        value = os.environ.get(env)
        if not value:
            raise KeyMaterialError(f"passphrase variable ${env} is not set")
        return value.encode()
    value = typer.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm)
    return str(value).encode()


def _pin(env: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(typer.prompt("Token user PIN", hide_input=True))


def _load_keys(paths: list[Path]) -> list[Key]:
    return [keyfiles.load_public_key(p) for p in paths]


def _signer(
    key: Path | None, pkcs11: str | None, passphrase_env: str | None, lib: str | None, pin_env: str
) -> Signer:
    if (key is None) == (pkcs11 is None):
        raise KeyMaterialError("give exactly one of --key KEYFILE or --pkcs11 REF")
    if key is not None:
        return keyfiles.load_signer_file(key, _passphrase(passphrase_env, what=str(key)))
    assert pkcs11 is not None
    from otaguard.crypto import hsm

    pin = _pin(pin_env)
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


def _short(keyid: str) -> str:
    return keyid[:12]


def _status_line(st: SignatureStatus) -> str:
    by = f" (by {st.judged_by})" if st.judged_by else ""
    state = "valid" if st.valid else "below threshold"
    return f"{st.role} v{st.version}{by}: {len(st.signed_by)}/{st.threshold} signatures, {state}"


# -- keys -------------------------------------------------------------------------------------
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
                pkcs11, _pin(pin_env), key_id=key_id, key_label=name, lib=pkcs11_lib
            )
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{name}.hsm.json").write_text(ref.to_json())
            pub_path.write_text(keyfiles.public_key_json(ref.public_key))
            console.print(f"generated ecdsa-p256 key {ref.public_key.keyid} in token {pkcs11!r}")
            console.print(f"token reference: {directory / f'{name}.hsm.json'}")
        else:
            kt = key_type or keyfiles.KeyType.ED25519
            passphrase = _passphrase(passphrase_env, what=f"new key {name}", confirm=True)
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
        r = _open(repo)
        result = rotate_role(
            r,
            role,
            add=_load_keys(new_key or []),
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
        r = _open(repo)
        result = revoke(r, keyid, _load_keys(new_key or []))
        _report_rotation(r, result.root_version, result.targets_version)


def _report_rotation(r: MakerRepository, root_version: int, targets_version: int | None) -> None:
    for st in r.root_status():
        console.print(_status_line(st))
    console.print(
        f"root v{root_version} staged: sign it with `otaguard release sign {r.path} --role root`"
        " using a threshold of the previous AND of the new root keys"
    )
    if targets_version is not None:
        console.print(
            f"targets v{targets_version} staged: sign it with the remaining/new targets keys"
        )


# -- repo -------------------------------------------------------------------------------------
def _online_keys(
    online_keys: Path | None, server: str | None, token_file: Path | None, ca: Path | None
) -> tuple[Key, Key]:
    if online_keys is not None:
        try:
            data: Any = json.loads(online_keys.read_text())
        except ValueError as exc:
            raise KeyMaterialError(f"{online_keys} is not JSON: {exc}") from exc
    elif server is not None:
        from otaguard.api_client import ManagementClient

        if token_file is None:
            raise KeyMaterialError("--server needs --token-file")
        client = ManagementClient(server, token_file.read_text().strip(), ca)
        try:
            data = client.online_keys()
        finally:
            client.close()
    else:
        raise KeyMaterialError("give --online-keys FILE or --server URL --token-file F")
    if not isinstance(data, dict) or SNAPSHOT not in data or TIMESTAMP not in data:
        raise KeyMaterialError("online keys must name a 'snapshot' and a 'timestamp' key")
    return keyfiles.key_from_dict(data[SNAPSHOT]), keyfiles.key_from_dict(data[TIMESTAMP])


@repo_app.command("init")
def repo_init(
    repo: RepoArg,
    root_key: Annotated[
        list[Path], typer.Option("--root-key", help="Root public key file (repeat for each).")
    ],
    root_threshold: Annotated[int, typer.Option("--root-threshold", help="Root keys needed.")],
    targets_key: Annotated[
        list[Path], typer.Option("--targets-key", help="Targets public key file (repeatable).")
    ],
    targets_threshold: Annotated[
        int, typer.Option("--targets-threshold", help="Targets keys needed.")
    ],
    online_keys: Annotated[
        Path | None,
        typer.Option("--online-keys", help="JSON with the server's snapshot/timestamp keys."),
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Fetch the online keys from this server.")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the API token.")
    ] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate of the server.")] = None,
) -> None:
    """Create root (1 year) and targets (3 months), consistent snapshots, unsigned.

    Snapshot and timestamp are signed by the server's online keys (1 week / 1 day).
    """
    with cli_errors():
        snapshot, timestamp = _online_keys(online_keys, server, token_file, ca)
        r = MakerRepository.init(
            repo,
            root_keys=_load_keys(root_key),
            root_threshold=root_threshold,
            targets_keys=_load_keys(targets_key),
            targets_threshold=targets_threshold,
            snapshot_key=snapshot,
            timestamp_key=timestamp,
        )
        console.print(
            f"initialised {repo}: root {root_threshold}-of-{len(root_key)}, "
            f"targets {targets_threshold}-of-{len(targets_key)}"
        )
        console.print(f"next: `otaguard release sign {r.path} --role root --key ROOT_KEY`")


def _flags(st: SignatureStatus, now: dt.datetime) -> list[str]:
    flags = []
    if not st.valid:
        flags.append(f"below threshold ({st.threshold - len(st.signed_by)} more)")
    if st.expires <= now:
        flags.append("EXPIRED")
    elif st.expires - now <= EXPIRY_WARNING:
        flags.append(f"expires in {(st.expires - now).days}d")
    return flags


@repo_app.command("status")
def repo_status(repo: RepoArg) -> None:
    """What is signed, below threshold or expiring (within 30 days)."""
    with cli_errors():
        r = _open(repo)
        now = utcnow()
        table = Table(title=f"repository {repo}")
        table.add_column("role", no_wrap=True)
        table.add_column("version", no_wrap=True)
        table.add_column("signatures", no_wrap=True)
        table.add_column("expires (UTC)", no_wrap=True)
        table.add_column("flags")
        for st in r.status():
            flags = _flags(st, now)
            role = st.role if not st.judged_by else f"{st.role} (by {st.judged_by})"
            table.add_row(
                role,
                str(st.version),
                f"{len(st.signed_by)}/{st.threshold}",
                st.expires.strftime("%Y-%m-%d"),
                ", ".join(flags) or "ok",
                style="red" if flags else None,
            )
        console.print(table)
        targets = r.targets().signed.targets
        console.print(f"{len(targets)} target(s) in targets v{r.targets().signed.version}")
        for st in r.status():
            if st.missing_keys and not st.valid:
                missing = ", ".join(_short(k) for k in st.missing_keys)
                console.print(f"{st.role} v{st.version} can still be signed by: {missing}")


@repo_app.command("publish")
def repo_publish(
    repo: RepoArg,
    server: Annotated[str, typer.Option("--server", help="Server base URL (https://...).")],
    token_file: Annotated[Path, typer.Option("--token-file", help="File holding the API token.")],
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate of the server.")] = None,
) -> None:
    """Upload root versions, images and targets; refused while anything is below threshold."""
    from otaguard.api_client import ManagementClient

    with cli_errors():
        r = _open(repo)
        r.publish_bundle()  # fails before any network traffic if below threshold
        client = ManagementClient(server, token_file.read_text().strip(), ca)
        try:
            result = client.publish(r)
        finally:
            client.close()
        console.print(
            f"published targets v{result['targets_version']} "
            f"(snapshot v{result['snapshot_version']}, timestamp v{result['timestamp_version']});"
            f" new: {', '.join(result['added']) or 'none'}"
        )


# -- release ----------------------------------------------------------------------------------
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
) -> None:
    """Add an image as a new target; targets gets a new version that needs signing."""
    from otaguard.repo.sbom import cyclonedx_sha256

    with cli_errors():
        r = _open(repo)
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
        r = _open(repo)
        if role not in (ROOT, TARGETS) and not r.has_role(role):
            raise RepositoryError(
                f"--role must be root, targets or a delegated role of this repository, not {role!r}"
            )
        signer = _signer(key, pkcs11, passphrase_env, pkcs11_lib, pin_env)
        if export_signature is not None:
            if export_signature.exists():
                raise RepositoryError(f"refusing to overwrite {export_signature}")
            detached = make_detached(r, role, signer)
            export_signature.write_text(json.dumps(detached, indent=2, sort_keys=True))
            console.print(
                f"signed {role} v{detached['version']} with {_short(signer.public_key.keyid)}; "
                f"detached signature in {export_signature}"
            )
            return
        r.sign(role, signer)
        _print_role_status(r, role)


@release_app.command("import-signature")
def release_import_signature(
    repo: RepoArg,
    sigfile: Annotated[Path, typer.Argument(help="Detached signature from `--export-signature`.")],
) -> None:
    """Import a signature made offline over a copy of this repository's metadata."""
    from otaguard.repo.detached import import_detached, parse_detached

    with cli_errors():
        r = _open(repo)
        data = parse_detached(sigfile.read_text())
        import_detached(r, data)
        _print_role_status(r, str(data["role"]))


def _print_role_status(r: MakerRepository, role: str) -> None:
    for st in r.status():
        if st.role == role:
            console.print(_status_line(st))


@repo_app.command("delegate")
def repo_delegate(
    repo: RepoArg,
    name: Annotated[str, typer.Argument(help="Name of the new role, e.g. a product line.")],
    key: Annotated[
        list[Path], typer.Option("--key", help="Public key file of the role (repeatable).")
    ],
    threshold: Annotated[int, typer.Option("--threshold", help="Keys needed to sign the role.")],
    path: Annotated[
        list[str], typer.Option("--path", help="Target path pattern it may sign, e.g. 'board/*'.")
    ],
    parent: Annotated[str, typer.Option("--parent", help="Delegating role.")] = TARGETS,
) -> None:
    """Give a team its own role: only its keys can sign targets under its paths."""
    from otaguard.repo.maker_delegation import delegate

    with cli_errors():
        r = _open(repo)
        if parent != TARGETS and not r.has_role(parent):
            raise RepositoryError(f"no role {parent!r} to delegate from")
        delegate(r, name, keys=_load_keys(key), threshold=threshold, paths=path, parent=parent)
        console.print(
            f"delegated {', '.join(path)} to {name} ({threshold}-of-{len(key)}); "
            f"sign {parent} again, and {name} with its keys"
        )


@repo_app.command("delegate-bins")
def repo_delegate_bins(
    repo: RepoArg,
    parent: Annotated[str, typer.Argument(help="Role whose targets are spread over the bins.")],
    key: Annotated[list[Path], typer.Option("--key", help="Public key file of the bins.")],
    threshold: Annotated[int, typer.Option("--threshold", help="Keys needed per bin.")],
    bits: Annotated[int | None, typer.Option("--bits", min=1, max=16, help="2**BITS bins.")] = None,
    expected_targets: Annotated[
        int | None,
        typer.Option("--expected-targets", min=1, help="Pick the bin count for this many."),
    ] = None,
) -> None:
    """Hashed-bin delegation (TUF succinct roles) so devices fetch one small bin per update."""
    from otaguard.repo.delegation import suggest_bit_length
    from otaguard.repo.maker_delegation import delegate_hashed_bins

    with cli_errors():
        if (bits is None) == (expected_targets is None):
            raise RepositoryError("give exactly one of --bits and --expected-targets")
        r = _open(repo)
        if parent != TARGETS and not r.has_role(parent):
            raise RepositoryError(f"no role {parent!r} to delegate from")
        n_bits = bits if bits is not None else suggest_bit_length(expected_targets or 1)
        names = delegate_hashed_bins(
            r, parent, keys=_load_keys(key), threshold=threshold, bit_length=n_bits
        )
        console.print(
            f"{parent} now delegates to {len(names)} hashed bins ({names[0]} .. {names[-1]}); "
            f"sign {parent} again, and the bins with `release sign-delegated`"
        )


@release_app.command("sign-delegated")
def release_sign_delegated(
    repo: RepoArg,
    key: Annotated[Path, typer.Option("--key", help="Encrypted private key file (NAME.key).")],
    passphrase_env: PassphraseEnv = None,
) -> None:
    """Sign every delegated role (e.g. all hashed bins) that this key signs and has not signed."""
    from otaguard.repo.maker_delegation import sign_delegated

    with cli_errors():
        r = _open(repo)
        signer = _signer(key, None, passphrase_env, None, DEFAULT_PIN_ENV)
        done = sign_delegated(r, signer)
        if not done:
            raise RepositoryError(f"key {_short(signer.public_key.keyid)} has nothing to sign")
        valid = sum(1 for st in done if st.valid)
        console.print(f"signed {len(done)} role(s); {valid} now at threshold")
