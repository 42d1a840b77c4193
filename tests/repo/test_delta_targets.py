"""The delta target's shape (``repo/delta_targets.py``), the interface the maker, the server and
the device agent share: what is built parses back, and every bad shape is refused with
``DeltaMetadataError`` (a ``DeltaError`` for the device, a ``RepositoryError`` for publishing)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from otaguard.errors import DeltaError, DeltaMetadataError, RepositoryError
from otaguard.repo.delta_targets import (
    FORMAT,
    DeltaTarget,
    check_fits,
    check_role_deltas,
    delta_path,
    full_image_of,
    is_delta_target,
    make_delta_target,
    parse_delta_target,
)
from otaguard.repo.images import ReleaseInfo

SRC = hashlib.sha256(b"old image").hexdigest()
IMG = hashlib.sha256(b"new image").hexdigest()
ART = hashlib.sha256(b"new image, compressed").hexdigest()
PATCH = hashlib.sha256(b"patch").hexdigest()
FULL_PATH = "board/fw-2.img.zst"


def full_target(*, compressed: bool = True) -> TargetFile:
    if compressed:
        info = ReleaseInfo(
            version="2",
            hardware=("board",),
            compression="zstd",
            image_sha256=IMG,
            image_length=4096,
        )
        return TargetFile(3000, {"sha256": ART}, FULL_PATH, {"custom": info.to_custom()})
    info = ReleaseInfo(version="2", hardware=("board",))
    return TargetFile(4096, {"sha256": IMG}, "board/fw-2.img", {"custom": info.to_custom()})


def delta_target() -> TargetFile:
    return make_delta_target(
        full_target(), source_sha256=SRC, source_length=4000, patch_sha256=PATCH, patch_length=100
    )


def test_built_delta_target_has_the_interface_shape_and_parses_back() -> None:
    target = delta_target()
    assert target.path == f"{FULL_PATH}.from-{SRC[:16]}.otadelta"
    assert target.length == 100
    assert target.hashes == {"sha256": PATCH}
    assert target.custom == {
        "delta": {
            "format": "otaguard-delta/1",
            "source_sha256": SRC,
            "source_length": 4000,
            "target_path": FULL_PATH,
            "target_sha256": IMG,  # the decompressed image, not the zstd artifact
            "target_length": 4096,
        }
    }
    delta = parse_delta_target(target)
    assert delta == DeltaTarget(SRC, 4000, FULL_PATH, IMG, 4096)
    assert is_delta_target(target)
    assert not is_delta_target(full_target())
    check_fits(delta, full_target())
    # survives TUF's own serialisation
    again = TargetFile.from_dict(copy.deepcopy(target.to_dict()), target.path)
    assert parse_delta_target(again) == delta


def test_uncompressed_full_image_is_its_own_image() -> None:
    full = full_target(compressed=False)
    assert full_image_of(full) == (IMG, 4096)
    target = make_delta_target(
        full, source_sha256=SRC, source_length=1, patch_sha256=PATCH, patch_length=10
    )
    assert parse_delta_target(target).target_sha256 == IMG


def test_error_is_both_a_delta_error_and_a_repository_error() -> None:
    assert issubclass(DeltaMetadataError, DeltaError)
    assert issubclass(DeltaMetadataError, RepositoryError)


def _good() -> dict[str, Any]:
    return copy.deepcopy(delta_target().custom)


def _with(**changes: Any) -> dict[str, Any]:
    custom = _good()
    for key, value in changes.items():
        if value is _DROP:
            del custom["delta"][key]
        else:
            custom["delta"][key] = value
    return custom


_DROP = object()

BAD_CUSTOMS: list[tuple[str, Any]] = [
    ("not a dict", ["delta"]),
    ("none", None),
    ("empty", {}),
    ("delta not a dict", {"delta": "x"}),
    ("extra top-level key", {**_good(), "version": "2"}),
    ("extra delta key", _with(algorithm="bsdiff")),
    ("wrong format", _with(format="otaguard-delta/2")),
    ("format as int", _with(format=1)),
    ("missing format", _with(format=_DROP)),
    ("missing source_sha256", _with(source_sha256=_DROP)),
    ("missing target_length", _with(target_length=_DROP)),
    ("short sha256", _with(source_sha256=SRC[:63])),
    ("upper-case sha256", _with(source_sha256=SRC.upper())),
    ("non-hex sha256", _with(target_sha256="g" * 64)),
    ("sha256 as int", _with(target_sha256=12)),
    ("length as string", _with(source_length="4000")),
    ("length as bool", _with(target_length=True)),
    ("length as float", _with(source_length=4000.0)),
    ("zero length", _with(target_length=0)),
    ("negative length", _with(source_length=-1)),
    ("huge length", _with(target_length=(1 << 40) + 1)),
    ("target_path not a string", _with(target_path=["a"])),
    ("target_path with ..", _with(target_path="board/../x.img")),
    ("target_path absolute", _with(target_path="/etc/passwd")),
    ("target_path is a delta", _with(target_path="board/x.img.from-abc.otadelta")),
    ("source equals target", _with(source_sha256=IMG)),
]


@pytest.mark.parametrize(("label", "custom"), BAD_CUSTOMS, ids=[b[0] for b in BAD_CUSTOMS])
def test_bad_custom_shapes_are_refused(label: str, custom: Any) -> None:
    with pytest.raises(DeltaMetadataError):
        DeltaTarget.from_custom(custom)


def test_control_good_custom_parses() -> None:
    assert DeltaTarget.from_custom(_good()).source_sha256 == SRC


def test_path_must_match_the_fields() -> None:
    good = delta_target()
    for path in (
        f"{FULL_PATH}.from-{IMG[:16]}.otadelta",  # another source
        f"board/fw-3.img.zst.from-{SRC[:16]}.otadelta",  # another full image
        f"{FULL_PATH}.from-{SRC[:15]}.otadelta",
        FULL_PATH,
    ):
        moved = TargetFile(good.length, dict(good.hashes), path, {"custom": good.custom})
        with pytest.raises(DeltaMetadataError, match="path"):
            parse_delta_target(moved)


def test_needs_a_sha256_and_a_length() -> None:
    good = delta_target()
    no_sha = TargetFile(good.length, {"sha512": "ab" * 64}, good.path, {"custom": good.custom})
    with pytest.raises(DeltaMetadataError, match="sha256"):
        parse_delta_target(no_sha)


def test_a_delta_path_without_delta_metadata_is_a_delta_claim_refused() -> None:
    bare = TargetFile(10, {"sha256": PATCH}, delta_target().path, {"custom": {"version": "2"}})
    assert is_delta_target(bare)
    with pytest.raises(DeltaMetadataError):
        parse_delta_target(bare)


def test_fits_only_the_image_it_rebuilds() -> None:
    delta = parse_delta_target(delta_target())
    check_fits(delta, full_target())
    other_image = ReleaseInfo(
        version="2", hardware=("board",), compression="zstd", image_sha256=SRC, image_length=4096
    )
    changed = TargetFile(3000, {"sha256": ART}, FULL_PATH, {"custom": other_image.to_custom()})
    with pytest.raises(DeltaMetadataError, match="do not match"):
        check_fits(delta, changed)
    with pytest.raises(DeltaMetadataError, match="rebuilds"):
        check_fits(delta, full_target(compressed=False))
    no_release = TargetFile(3000, {"sha256": ART}, FULL_PATH, {"custom": {}})
    with pytest.raises(DeltaMetadataError):
        check_fits(delta, no_release)


def test_delta_path_of_a_too_long_name_is_refused() -> None:
    with pytest.raises(DeltaMetadataError, match="too long"):
        delta_path("b/" + "x" * 120, SRC)


def test_role_deltas_need_their_full_image_in_the_same_role() -> None:
    full, delta = full_target(), delta_target()
    assert set(check_role_deltas({full.path: full, delta.path: delta})) == {delta.path}
    with pytest.raises(DeltaMetadataError, match="not in the same role"):
        check_role_deltas({delta.path: delta})
    assert check_role_deltas({full.path: full}) == {}


def test_role_deltas_must_be_smaller_than_the_full_artifact() -> None:
    full = full_target()
    big = make_delta_target(
        full, source_sha256=SRC, source_length=1, patch_sha256=PATCH, patch_length=full.length
    )
    with pytest.raises(DeltaMetadataError, match="not smaller"):
        check_role_deltas({full.path: full, big.path: big})


def test_format_constant() -> None:
    assert FORMAT == "otaguard-delta/1"
