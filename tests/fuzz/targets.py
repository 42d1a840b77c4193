"""Fuzz targets: every parser OTAGuard runs on input it does not trust, fed arbitrary bytes.

Each target takes one input and may raise only the errors its parser documents (``expected``);
anything else (a ``KeyError``, ``RecursionError``, ``UnicodeDecodeError`` ...) is a finding.
``seeds`` are valid inputs (made here, with keys generated per run) and a few known-hostile
shapes, so mutation starts from deep inside each format. Used by ``run.py`` (atheris,
coverage-guided, or the hypothesis fallback).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, cast

from securesystemslib.signer import CryptoSigner

from otaguard.agent.delta_steps import SlotPrefix
from otaguard.bundle.format import BundleError, BundleReader
from otaguard.delta import Checkpoint, DeltaDecoder, encode
from otaguard.device.bootenv import current_copy, decode_env, encode_env
from otaguard.device.grubenv import comment_lines, decode_grubenv, encode_grubenv
from otaguard.director.assignment import sign_assignment, verify_assignment
from otaguard.director.manifest import (
    VersionManifest,
    check_public_key,
    sign_manifest,
    verify_manifest,
)
from otaguard.errors import AssignmentError, BootError, DeltaError, ManifestError
from otaguard.server.ranges import RangeNotSatisfiable, parse_range

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DEEP_JSON = b"[" * 5000 + b"]" * 5000


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    expected: tuple[type[BaseException], ...]
    max_len: int = 4096  # longest input tried (libFuzzer's -max_len)


# Range header (server/ranges.py): first 4 bytes the representation's size, the rest the header.


def range_header(data: bytes) -> None:
    size = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
    span = parse_range(data[4:].decode("latin-1"), size)
    if span is not None:
        assert 0 <= span[0] <= span[1] < size


def range_seeds() -> list[bytes]:
    size = (1000).to_bytes(4, "big")
    return [size + h for h in (b"bytes=0-99", b"bytes=-5", b"bytes=5-", b"bytes=0-1,2-3")] + [
        size + b"bytes=" + b"9" * 5000 + b"-"
    ]


# U-Boot environment copies (device/bootenv.py): first byte picks redundant or not.


def uboot_env(data: bytes) -> None:
    redundant = bool(data[:1]) and data[0] & 1 == 1
    copies = [decode_env(part, redundant=redundant) for part in (data[1:], data[1:][::-1])]
    index = current_copy(copies)
    assert index is None or copies[index].valid


def uboot_seeds() -> list[bytes]:
    values = {"bootcmd": "run ota", "ota_slot": "a", "bootcount": "0", "bootlimit": "3"}
    return [
        b"\x01" + encode_env(values, 256, redundant=True, flags=3),
        b"\x00" + encode_env(values, 128, redundant=False),
    ]


# GRUB environment block (device/grubenv.py).


def grub_env(data: bytes) -> None:
    decode_grubenv(data)
    comment_lines(data)


def grub_seeds() -> list[bytes]:
    block = encode_grubenv({"ota_slot": "b", "note": "a\\b\nc"}, size=1024)
    return [block, block.replace(b"#", b"\\", 3)]


# Offline bundle (bundle/format.py): the bytes are the bundle file.

_BUNDLE_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def bundle(data: bytes) -> None:
    fd, name = tempfile.mkstemp(dir=_BUNDLE_DIR, suffix=".tar")
    try:
        os.write(fd, data)
        os.close(fd)
        with BundleReader(Path(name)) as reader:
            reader.check_integrity(max_size=1 << 20)
            for member in reader.names():
                with reader.open(member) as fh:
                    fh.read(1 << 16)
    finally:
        os.unlink(name)


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def bundle_seeds() -> list[bytes]:
    meta = b'{"signed": {}}'
    files = {"metadata/1.root.json": hashlib.sha256(meta).hexdigest()}
    manifest = json.dumps({"format": 1, "target": "t", "files": files}).encode()
    return [
        _tar({"otaguard-bundle.json": manifest, "metadata/1.root.json": meta}),
        _tar({"otaguard-bundle.json": DEEP_JSON}),
    ]


# Device version manifests (director/manifest.py): a DSSE envelope as the server receives it.
# First byte: 0 = the bytes are the envelope JSON; 1 = they are the payload, signed by the key.


@cache
def _device_signer() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


@cache
def _key_json() -> str:
    key = _device_signer().public_key
    return check_public_key(key.to_dict() | {"keyid": key.keyid})


def version_manifest(data: bytes) -> None:
    signer = _device_signer()
    if data[:1] == b"\1":
        from securesystemslib.dsse import Envelope

        from otaguard.director.manifest import PAYLOAD_TYPE

        env = Envelope(data[1:], PAYLOAD_TYPE, {})
        env.sign(signer)
        envelope: Any = env.to_dict()
    else:
        try:
            envelope = json.loads(data[1:])
        except (ValueError, RecursionError):
            return  # the server's request schema refuses these before verification
        if not isinstance(envelope, dict):
            return
    verify_manifest(envelope, _key_json(), device_id="dev-1", now=NOW)


def manifest_seeds() -> list[bytes]:
    manifest = VersionManifest.create(
        device_id="dev-1",
        hardware="sim-board",
        version="1.0.0",
        slot="a",
        security_version=1,
        agent_version="0.1.0",
        now=NOW,
    )
    envelope = sign_manifest(manifest, _device_signer())
    payload = manifest.payload()
    numbered = dataclasses.replace(manifest, sequence=2**63 - 1).payload()  # the largest number
    return [
        b"\0" + json.dumps(envelope).encode(),
        b"\1" + payload,
        b"\1" + numbered,
        b"\1" + DEEP_JSON[:4000],
    ]


# Director assignments (director/assignment.py): the bytes the device downloads.


@cache
def _director() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def assignment(data: bytes) -> None:
    verify_assignment(data, _director().public_key, device_id="dev-1", min_counter=1, now=NOW)


def assignment_seeds() -> list[bytes]:
    from tuf.api.metadata import TargetFile

    target = TargetFile(4, {"sha256": "00" * 32}, "sim-board/image-1.0.0.bin")
    signed = sign_assignment(
        _director(), device_id="dev-1", deployment_id=1, counter=2, target=target, now=NOW
    )
    return [signed, DEEP_JSON]


# TUF metadata as the agent's tuf.ngclient Updater takes it (TrustedMetadataSet: the Updater's
# whole trust logic, fed bytes; the fetch and file writes around it carry no parsing).
# First byte: which step gets the input (0 root update, 1 timestamp, 2 snapshot, 3 targets).


def tuf_metadata(data: bytes) -> None:
    from tuf.api.metadata import Root

    repo = _tuf_repo()
    step = data[0] % 4 if data else 0
    trusted = _trusted_before(step)
    files = [repo["2.root"], repo["timestamp"], repo["snapshot"], repo["targets"]]
    files[step] = data[1:]
    updates = [trusted.update_root, trusted.update_timestamp]
    updates += [trusted.update_snapshot, trusted.update_targets]
    for update, file in zip(updates[step:], files[step:], strict=True):
        update(file)
    assert isinstance(trusted.root, Root)


def _trusted_before(step: int) -> Any:
    """A fresh TrustedMetadataSet that has taken the valid files before ``step`` (the valid
    prefix is verified once, then copied: only the fuzzed step and those after it run)."""
    return _copy_set(_trusted_prefixes()[step])


@cache
def _trusted_prefixes() -> list[Any]:
    from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
    from tuf.ngclient.config import EnvelopeType

    repo = _tuf_repo()
    trusted = TrustedMetadataSet(repo["root"], EnvelopeType.METADATA)
    prefixes = []
    for update, name in [
        (trusted.update_root, "2.root"),
        (trusted.update_timestamp, "timestamp"),
        (trusted.update_snapshot, "snapshot"),
        (trusted.update_targets, "targets"),
    ]:
        snapshot = _copy_set(trusted)
        prefixes.append(snapshot)
        update(repo[name])
    return prefixes


def _copy_set(trusted: Any) -> Any:
    clone = copy.copy(trusted)
    clone._trusted_set = dict(trusted._trusted_set)  # the state updates change
    clone._trusted_delegations = set(trusted._trusted_delegations)
    return clone


@cache
def _tuf_repo() -> dict[str, bytes]:
    from tuf.api.metadata import (
        Key,
        Metadata,
        MetaFile,
        Role,
        Root,
        Snapshot,
        TargetFile,
        Targets,
        Timestamp,
    )

    signer = CryptoSigner.generate_ed25519()
    key: Key = signer.public_key
    expires = NOW + dt.timedelta(days=3650)
    roles = {name: Role([key.keyid], 1) for name in ("root", "timestamp", "snapshot", "targets")}
    root = Root(expires=expires, keys={key.keyid: key}, roles=roles)
    targets = Targets(expires=expires)
    targets.targets["a.bin"] = TargetFile(3, {"sha256": "11" * 32}, "a.bin")
    out: dict[str, bytes] = {}

    def signed(name: str, obj: Any) -> bytes:
        md = Metadata(obj)
        md.sign(signer)
        out[name] = md.to_bytes()
        return out[name]

    signed("root", root)
    root.version = 2
    signed("2.root", root)
    signed("targets", targets)
    snapshot = Snapshot(expires=expires, meta={"targets.json": MetaFile(1)})
    signed("snapshot", snapshot)
    signed("timestamp", Timestamp(expires=expires, snapshot_meta=MetaFile(1)))
    return out


def tuf_seeds() -> list[bytes]:
    repo = _tuf_repo()
    names = ["2.root", "timestamp", "snapshot", "targets"]
    return [struct.pack("B", i) + repo[name] for i, name in enumerate(names)] + [b"\1" + DEEP_JSON]


# Delta patches (delta/container.py parse, delta/decoder.py streaming apply), fed as the agent
# feeds them (agent/delta_steps.py). First byte: 0 = the bare decoder over the source;
# 1 = as the device applies: the source a ``SlotPrefix`` view of a longer slot, the signed
# source and target sha256 expected; 2 = a resume at the end of the first segment, with the
# output written so far. The rest is the patch. Sources stay small (one segment) so a
# million executions take minutes.


@cache
def _delta_images() -> tuple[bytes, bytes]:
    import random

    rng = random.Random(5)
    source = rng.randbytes(6000)
    target = bytearray(source)
    target[100:164] = rng.randbytes(64)
    target[3000:3000] = b"inserted code" * 20
    return source, bytes(target)


def delta_patch(data: bytes) -> None:
    if not data:
        return
    source, target = _delta_images()
    mode, patch = data[0] % 3, io.BytesIO(data[1:])
    out = io.BytesIO()
    if mode == 0:
        bare = DeltaDecoder(io.BytesIO(source), patch)
        bare.apply(out.write)
        if hashlib.sha256(out.getvalue()).digest() != bare.header.target_sha256:
            raise AssertionError("the decoder returned an image its patch does not name")
        return
    slot = SlotPrefix(cast(BinaryIO, io.BytesIO(source + b"\xff" * 512)), len(source))
    decoder = DeltaDecoder(
        cast(BinaryIO, slot),
        patch,
        expected_target_sha256=hashlib.sha256(target).hexdigest(),
        expected_source_sha256=hashlib.sha256(source).hexdigest(),
    )
    if mode == 1:
        decoder.apply(out.write)
    else:
        resume = Checkpoint(1, len(target))
        decoder.apply(out.write, resume=resume, written=io.BytesIO(target))
    if out.getvalue() != (b"" if mode == 2 else target):
        raise AssertionError("a patch the decoder accepted rebuilt another image")


def delta_seeds() -> list[bytes]:
    source, target = _delta_images()
    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        old, new, out = Path(tmp) / "old", Path(tmp) / "new", Path(tmp) / "patch"
        old.write_bytes(source)
        for image in (target, os.urandom(2000)):  # a delta, and a full-image patch
            new.write_bytes(image)
            encode(old, new, out)
            seeds += [bytes([mode]) + out.read_bytes() for mode in (0, 1, 2)]
    return seeds


def _delta_expected() -> tuple[type[BaseException], ...]:
    return (DeltaError,)


def _tuf_expected() -> tuple[type[BaseException], ...]:
    from tuf.api.exceptions import RepositoryError
    from tuf.api.serialization import DeserializationError

    return (RepositoryError, DeserializationError)


TARGETS: dict[str, Target] = {
    "range": Target(range_header, range_seeds, (RangeNotSatisfiable,), max_len=8192),
    "uboot_env": Target(uboot_env, uboot_seeds, (), max_len=2048),
    "grub_env": Target(grub_env, grub_seeds, (BootError,), max_len=2048),
    "bundle": Target(bundle, bundle_seeds, (BundleError,), max_len=16384),
    "manifest": Target(version_manifest, manifest_seeds, (ManifestError,), max_len=8192),
    "assignment": Target(assignment, assignment_seeds, (AssignmentError,), max_len=12288),
    "tuf_metadata": Target(tuf_metadata, tuf_seeds, _tuf_expected(), max_len=12288),
    "delta": Target(delta_patch, delta_seeds, _delta_expected(), max_len=8192),
}
