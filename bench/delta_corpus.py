"""Real binary pairs (version A -> version B) for the delta benchmark, fetched from registries.

Delta tools are easy to flatter with synthetic data (a few flipped bytes in random noise); what a
fleet ships is recompiled programs and libraries whose code moved, and filesystem images made of
them. So every pair here is a real minor release bump of a real compiled artifact, fetched with
the ordinary package clients (``npm pack``, ``pip download``) and cached under
``bench/cache/delta/`` (git-ignored). Each fetched package is recorded with name, version and
the sha256 of the file the registry served, and each pair with the sha256 of both sides, in
``bench/results/delta_corpus.json``.

Pairs (``kind``: ``executable`` pairs count toward the benchmark's goal):

* Go programs: esbuild for linux-x64 and linux-arm64 (npm), a patch release apart;
* a Rust program: ruff (PyPI wheel), a patch release apart;
* shared libraries from wheels: orjson, pydantic-core, zstandard, cryptography (Rust and C);
* ``rootfs-tar``: an uncompressed tar of the files of several wheels, all at version A vs all at
  version B (what an A/B image built from packages looks like: many files, some changed);
* ``firmware-compressed``: the gzip-compressed npm tarballs of esbuild (negative control: a
  delta of compressed bytes should not pay, and the encoder must fall back to the full image).

Usage: ``.venv/bin/python bench/delta_corpus.py [--cache bench/cache/delta]``; prints the pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_CACHE = ROOT / "cache" / "delta"
MANIFEST = ROOT / "results" / "delta_corpus.json"
WHEEL_PLATFORM = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"]
WHEEL_ABI = ["--python-version", "3.11", "--implementation", "cp", "--only-binary", ":all:"]


@dataclass(frozen=True)
class Package:
    registry: str  # "npm" or "pypi"
    name: str
    version_a: str
    version_b: str
    member: str  # path of the binary inside the package ("" for the package file itself)


@dataclass
class Pair:
    name: str
    kind: str  # "executable", "image" or "compressed"
    old: str
    new: str
    old_size: int
    new_size: int
    old_sha256: str
    new_sha256: str
    sources: list[dict[str, str]]


ESBUILD_X64 = Package("npm", "@esbuild/linux-x64", "0.23.0", "0.23.1", "package/bin/esbuild")
ESBUILD_ARM64 = Package("npm", "@esbuild/linux-arm64", "0.23.0", "0.23.1", "package/bin/esbuild")
RUFF = Package("pypi", "ruff", "0.6.8", "0.6.9", "ruff-{v}.data/scripts/ruff")
ORJSON = Package(
    "pypi", "orjson", "3.10.6", "3.10.7", "orjson/orjson.cpython-311-x86_64-linux-gnu.so"
)
PYDANTIC_CORE = Package(
    "pypi",
    "pydantic-core",
    "2.20.0",
    "2.20.1",
    "pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so",
)
ZSTANDARD = Package(
    "pypi", "zstandard", "0.22.0", "0.23.0", "zstandard/backend_c.cpython-311-x86_64-linux-gnu.so"
)
CRYPTOGRAPHY = Package(
    "pypi", "cryptography", "43.0.0", "43.0.1", "cryptography/hazmat/bindings/_rust.abi3.so"
)
EXECUTABLES = [ESBUILD_X64, ESBUILD_ARM64, RUFF, ORJSON, PYDANTIC_CORE, ZSTANDARD, CRYPTOGRAPHY]
# The root-filesystem image: every file of these wheels, version A vs version B.
ROOTFS = [ORJSON, PYDANTIC_CORE, ZSTANDARD, CRYPTOGRAPHY]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_package(pkg: Package, version: str, cache: Path) -> Path:
    """The package file as the registry serves it (cached)."""
    folder = cache / "packages" / pkg.registry / pkg.name.replace("/", "_") / version
    found = sorted(p for p in folder.glob("*") if p.is_file()) if folder.exists() else []
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    if pkg.registry == "npm":
        cmd = [
            "npm",
            "pack",
            "--silent",
            f"{pkg.name}@{version}",
            "--pack-destination",
            str(folder),
        ]
    else:
        cmd = ["pip", "download", "-q", "--no-deps", *WHEEL_ABI, *WHEEL_PLATFORM]
        cmd += ["-d", str(folder), f"{pkg.name}=={version}"]
    subprocess.run(cmd, check=True, capture_output=True)
    found = sorted(p for p in folder.glob("*") if p.is_file())
    if len(found) != 1:
        raise SystemExit(f"{pkg.name} {version}: expected one file in {folder}, got {found}")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        f = t.extractfile(member)
        assert f is not None
        return f.read()


def wheel_files(archive: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if not n.endswith("/"))
        return [(n, z.read(n)) for n in names]


def rootfs_tar(archives: list[Path]) -> bytes:
    """An uncompressed tar of every wheel's files under usr/lib/python3/ (fixed metadata, so
    the two versions differ only by content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for archive in archives:
            for name, data in wheel_files(archive):
                if ".dist-info/" in name:
                    name = name.split("-", 1)[0] + ".dist-info/" + name.split("/", 1)[1]
                info = tarfile.TarInfo("usr/lib/python3/dist-packages/" + name)
                info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def source_record(pkg: Package, version: str, archive: Path) -> dict[str, str]:
    return {
        "registry": pkg.registry,
        "name": pkg.name,
        "version": version,
        "file": archive.name,
        "sha256": sha256_file(archive),
    }


def write_pair(
    cache: Path, name: str, kind: str, old: bytes, new: bytes, sources: list[dict[str, str]]
) -> Pair:
    folder = cache / "pairs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in ((folder / "old", old), (folder / "new", new)):
        if not path.exists() or sha256_file(path) != hashlib.sha256(data).hexdigest():
            path.write_bytes(data)  # left alone when equal: a running bench may be reading it
    return Pair(
        name=name,
        kind=kind,
        old=str(folder / "old"),
        new=str(folder / "new"),
        old_size=len(old),
        new_size=len(new),
        old_sha256=hashlib.sha256(old).hexdigest(),
        new_sha256=hashlib.sha256(new).hexdigest(),
        sources=sources,
    )


def build(cache: Path) -> list[Pair]:
    pairs: list[Pair] = []
    archives: dict[tuple[str, str], Path] = {}
    for pkg in EXECUTABLES:
        for v in (pkg.version_a, pkg.version_b):
            archives[(pkg.name, v)] = fetch_package(pkg, v, cache)
    for pkg in EXECUTABLES:
        a, b = archives[(pkg.name, pkg.version_a)], archives[(pkg.name, pkg.version_b)]
        old = read_member(a, pkg.member.format(v=pkg.version_a))
        new = read_member(b, pkg.member.format(v=pkg.version_b))
        label = f"{pkg.name.replace('@esbuild/', 'esbuild-')}-{pkg.version_a}-{pkg.version_b}"
        sources = [source_record(pkg, pkg.version_a, a), source_record(pkg, pkg.version_b, b)]
        pairs.append(write_pair(cache, label, "executable", old, new, sources))
    old = rootfs_tar([archives[(p.name, p.version_a)] for p in ROOTFS])
    new = rootfs_tar([archives[(p.name, p.version_b)] for p in ROOTFS])
    sources = [
        source_record(p, v, archives[(p.name, v)])
        for p in ROOTFS
        for v in (p.version_a, p.version_b)
    ]
    pairs.append(write_pair(cache, "rootfs-tar", "image", old, new, sources))
    a = archives[(ESBUILD_X64.name, ESBUILD_X64.version_a)]
    b = archives[(ESBUILD_X64.name, ESBUILD_X64.version_b)]
    sources = [
        source_record(ESBUILD_X64, ESBUILD_X64.version_a, a),
        source_record(ESBUILD_X64, ESBUILD_X64.version_b, b),
    ]
    pairs.append(
        write_pair(
            cache, "firmware-compressed", "compressed", a.read_bytes(), b.read_bytes(), sources
        )
    )
    return pairs


def load_pairs(cache: Path = DEFAULT_CACHE) -> list[Pair]:
    """The corpus, fetched and built on first use."""
    pairs = build(cache)
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps([asdict(p) for p in pairs], indent=2) + "\n")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    for p in load_pairs(args.cache):
        print(f"{p.name:42} {p.kind:10} {p.old_size:>10} -> {p.new_size:>10}  {p.new_sha256[:16]}")


if __name__ == "__main__":
    main()
