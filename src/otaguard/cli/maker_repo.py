"""``otaguard repo``: create the maker's TUF repository, show what still needs signing, publish to
a server, delegate paths and hashed bins. All offline except ``publish`` and fetching the
server's online keys at ``init``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from securesystemslib.signer import Key

from otaguard.cli.maker_common import (
    EXPIRY_WARNING,
    RepoArg,
    cli_errors,
    console,
    load_keys,
    open_repo,
    repo_app,
    short_keyid,
)
from otaguard.crypto import keys as keyfiles
from otaguard.errors import KeyMaterialError, RepositoryError
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import SNAPSHOT, TARGETS, TIMESTAMP, SignatureStatus, utcnow


def fetch_online_keys(
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
        snapshot, timestamp = fetch_online_keys(online_keys, server, token_file, ca)
        r = MakerRepository.init(
            repo,
            root_keys=load_keys(root_key),
            root_threshold=root_threshold,
            targets_keys=load_keys(targets_key),
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
        r = open_repo(repo)
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
                missing = ", ".join(short_keyid(k) for k in st.missing_keys)
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
        r = open_repo(repo)
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
        r = open_repo(repo)
        if parent != TARGETS and not r.has_role(parent):
            raise RepositoryError(f"no role {parent!r} to delegate from")
        delegate(r, name, keys=load_keys(key), threshold=threshold, paths=path, parent=parent)
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
        r = open_repo(repo)
        if parent != TARGETS and not r.has_role(parent):
            raise RepositoryError(f"no role {parent!r} to delegate from")
        n_bits = bits if bits is not None else suggest_bit_length(expected_targets or 1)
        names = delegate_hashed_bins(
            r, parent, keys=load_keys(key), threshold=threshold, bit_length=n_bits
        )
        console.print(
            f"{parent} now delegates to {len(names)} hashed bins ({names[0]} .. {names[-1]}); "
            f"sign {parent} again, and the bins with `release sign-delegated`"
        )
