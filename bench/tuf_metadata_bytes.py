"""Metadata bytes a device fetches for one update, with N targets in the repository.

Two layouts of the same N releases, measured in the same run:

* baseline: every target in top-level ``targets.json``;
* hashed bins: top-level targets delegates ``sim-board/*`` to the team role ``sim-board``, which
  spreads its targets over ``2**b`` hashed bins (TUF succinct delegation, TAP 15), ``b`` from
  ``delegation.suggest_bit_length(N)``.

Both are published through ``OnlineRepository`` (the server's checks, snapshot and timestamp
signing) into an in-memory store. A stock ``tuf.ngclient.Updater`` then looks up one target
through a fetcher that serves that store and counts every byte it hands out (HTTP headers and
TLS are not counted: they are the same per request in both layouts). Two cases per N:

* first update: a factory-fresh device holding only root.json;
* next update: the same device after one more release was published (it already holds the
  previous metadata and fetches what changed).

Usage: ``.venv/bin/python bench/tuf_metadata_bytes.py [--sizes 10,10000,100000]
[--out bench/results/tuf_metadata_bytes]`` writes ``.json`` and ``.md`` next to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from otaguard.crypto.keys import generate_signer
from otaguard.repo import delegation
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.online import OnlineRepository
from otaguard.repo.roles import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, expiry_for

BASE = "https://repo.invalid/tuf/metadata/"
TEAM = "sim-board"


class MemoryStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get(self, name: str) -> bytes | None:
        return self.files.get(name)

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        if name in self.files and not replace:
            raise RuntimeError(f"{name} exists")
        self.files[name] = data


class CountingFetcher(FetcherInterface):
    """Serves the store's files by URL and counts the bytes and files handed out."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.bytes = 0
        self.files: list[tuple[str, int]] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        data = self.store.get(url.removeprefix(BASE))
        if data is None:
            raise tuf_exc.DownloadHTTPError(f"404 {url}", 404)
        self.bytes += len(data)
        self.files.append((url.removeprefix(BASE), len(data)))
        return iter([data])


@dataclass
class Keys:
    root: CryptoSigner
    targets: list[CryptoSigner]
    team: CryptoSigner
    snapshot: CryptoSigner
    timestamp: CryptoSigner


def release(i: int) -> TargetFile:
    """A realistic target entry: sha256, length and OTAGuard's release custom metadata."""
    name = f"{TEAM}/firmware-{i // 100}.{i % 100}.0-{i:06d}.img"
    digest = hashlib.sha256(name.encode()).hexdigest()
    info = ReleaseInfo(
        version=f"{i // 100}.{i % 100}.0",
        hardware=(TEAM,),
        security_version=i // 1000,
        notes=f"release {i}",
    )
    return TargetFile(4 << 20, {"sha256": digest}, name, {"custom": info.to_custom()})


def signed(md: Metadata[Any], *signers: CryptoSigner) -> bytes:
    for s in signers:
        md.sign(s, append=True)
    return md.to_bytes()


def new_repository(keys: Keys) -> tuple[OnlineRepository, MemoryStore, bytes]:
    root = Root(expires=expiry_for(ROOT), consistent_snapshot=True)
    root.add_key(keys.root.public_key, ROOT)
    for s in keys.targets:
        root.add_key(s.public_key, TARGETS)
    root.roles[TARGETS].threshold = len(keys.targets)
    root.add_key(keys.snapshot.public_key, SNAPSHOT)
    root.add_key(keys.timestamp.public_key, TIMESTAMP)
    root_bytes = signed(Metadata(root), keys.root)
    store = MemoryStore()
    online = OnlineRepository(store, keys.snapshot, keys.timestamp)
    online.install_root(root_bytes)
    return online, store, root_bytes


class Layout:
    """Publishes releases in one of the two layouts; ``add`` publishes one more release."""

    def __init__(self, keys: Keys, targets: list[TargetFile], bins: bool) -> None:
        self.keys = keys
        self.bins = bins
        self.online, self.store, self.root = new_repository(keys)
        if not bins:
            md = Metadata(Targets(version=2, expires=expiry_for(TARGETS)))
            md.signed.targets = {t.path: t for t in targets}
            self.top = md
            self.online.publish({TARGETS: signed(md, *keys.targets)})
            self.bit_length = 0
            return
        self.bit_length = delegation.suggest_bit_length(len(targets))
        top = Targets(version=2, expires=expiry_for(TARGETS))
        top.delegations = Delegations(
            keys={},
            roles={TEAM: DelegatedRole(TEAM, [], 1, True, [f"{TEAM}/*"])},
        )
        top.add_key(keys.team.public_key, TEAM)
        team = Targets(version=1, expires=expiry_for(TARGETS))
        succinct = SuccinctRoles([], 1, self.bit_length, f"{TEAM}-bins")
        team.delegations = Delegations(keys={}, succinct_roles=succinct)
        team.add_key(keys.team.public_key)
        self.succinct = succinct
        self.bin_md: dict[str, Metadata[Targets]] = {}
        roles = {
            TARGETS: signed(Metadata(top), *keys.targets),
            TEAM: signed(Metadata(team), keys.team),
        }
        for name, content in delegation.group_into_bins(succinct, targets).items():
            md = Metadata(Targets(version=1, expires=expiry_for(TARGETS), targets=content))
            self.bin_md[name] = md
            roles[name] = signed(md, keys.team)
        self.online.publish(roles)

    def add(self, target: TargetFile) -> None:
        if not self.bins:
            md = self.top
            md.signed.targets[target.path] = target
            md.signed.version += 1
            md.signatures.clear()
            self.online.publish({TARGETS: signed(md, *self.keys.targets)})
            return
        name = self.succinct.get_role_for_target(target.path)
        md = self.bin_md[name]
        md.signed.targets[target.path] = target
        md.signed.version += 1
        md.signatures.clear()
        self.online.publish({name: signed(md, self.keys.team)})


def device_fetch(
    layout: Layout, state: Path, target: str, fresh: bool
) -> tuple[int, list[tuple[str, int]]]:
    """Bytes a device fetches to refresh and find ``target``."""
    fetcher = CountingFetcher(layout.store)
    big = 1 << 31  # the stock 5 MB targets limit would refuse the large baselines outright
    updater = Updater(
        metadata_dir=str(state),
        metadata_base_url=BASE,
        target_base_url="https://repo.invalid/tuf/targets/",
        fetcher=fetcher,
        config=UpdaterConfig(targets_max_length=big, snapshot_max_length=big),
        bootstrap=layout.root if fresh else None,
    )
    updater.refresh()
    info = updater.get_targetinfo(target)
    if info is None:
        raise SystemExit(f"benchmark broken: {target} not found")
    return fetcher.bytes, fetcher.files


@dataclass
class Row:
    targets: int
    layout: str
    bins: int
    first_update_bytes: int
    next_update_bytes: int
    first_update_files: list[tuple[str, int]]
    next_update_files: list[tuple[str, int]]
    publish_seconds: float
    over_stock_targets_limit: bool


def measure(n: int, keys: Keys, bins: bool) -> Row:
    targets = [release(i) for i in range(n)]
    start = time.perf_counter()
    layout = Layout(keys, targets, bins)
    publish_s = time.perf_counter() - start
    wanted = targets[n // 2].path
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        first, first_files = device_fetch(layout, state, wanted, fresh=True)
        new = release(n)
        layout.add(new)
        nxt, next_files = device_fetch(layout, state, new.path, fresh=False)
    largest = max(size for name, size in first_files if "targets" in name or TEAM in name)
    return Row(
        targets=n,
        layout="hashed bins" if bins else "top-level targets (baseline)",
        bins=2**layout.bit_length if bins else 0,
        first_update_bytes=first,
        next_update_bytes=nxt,
        first_update_files=first_files,
        next_update_files=next_files,
        publish_seconds=round(publish_s, 2),
        over_stock_targets_limit=largest > UpdaterConfig().targets_max_length,
    )


def markdown(rows: list[Row], sizes: list[int]) -> str:
    out = [
        "| targets | layout | bins | first update (fresh device) | next update | "
        "ratio to baseline (first / next) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in sizes:
        base = next(r for r in rows if r.targets == n and r.bins == 0)
        for r in (x for x in rows if x.targets == n):
            ratio = (
                "1 / 1"
                if r is base
                else f"{r.first_update_bytes / base.first_update_bytes:.4f} / "
                f"{r.next_update_bytes / base.next_update_bytes:.4f}"
            )
            flag = (
                " (over the stock client's 5 MB targets limit)"
                if r.over_stock_targets_limit
                else ""
            )
            out.append(
                f"| {n:,} | {r.layout}{flag} | {r.bins or '-'} | {r.first_update_bytes:,} B | "
                f"{r.next_update_bytes:,} B | {ratio} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,10000,100000")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tuf_metadata_bytes"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    keys = Keys(
        root=generate_signer(),
        targets=[generate_signer(), generate_signer()],
        team=generate_signer(),
        snapshot=generate_signer(),
        timestamp=generate_signer(),
    )
    rows: list[Row] = []
    for n in sizes:
        for bins in (False, True):
            row = measure(n, keys, bins)
            rows.append(row)
            print(
                f"{n:>7} {row.layout:<30} bins={row.bins:<5} first={row.first_update_bytes:>11,} B"
                f" next={row.next_update_bytes:>11,} B  (publish {row.publish_seconds}s)",
                file=sys.stderr,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "tuf_metadata_bytes",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": [asdict(r) for r in rows],
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows, sizes)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
