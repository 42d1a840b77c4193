"""``otaguard delta create|apply|info``: delta patches for makers to inspect and benchmark.

Runs on a maker's workstation (``create`` needs both images in memory) or anywhere for
``apply``. The commands are thin: ``otaguard.delta`` does the work; here files are opened and
an ``OTAGuardError`` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from otaguard.delta import DeltaDecoder, DeltaInfo, encode
from otaguard.errors import OTAGuardError

delta_app = typer.Typer(help="Binary delta patches between two images.", no_args_is_help=True)

ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def _fail(exc: OTAGuardError) -> typer.Exit:
    typer.echo(f"error: {exc} [{exc.code}]", err=True)
    return typer.Exit(code=2)


def _describe(info: DeltaInfo) -> str:
    kind = "delta" if info.needs_source else "full image (the delta did not pay)"
    ratio = info.patch_size / info.target_size if info.target_size else 0.0
    return (
        f"{kind}: {info.patch_size} bytes for a {info.target_size}-byte image ({ratio:.2%}), "
        f"{info.segments} segment(s)\nsource sha256 {info.source_sha256}\n"
        f"target sha256 {info.target_sha256}"
    )


@delta_app.command("create")
def create(
    old: ExistingFile,
    new: ExistingFile,
    patch: Annotated[Path, typer.Argument(dir_okay=False, help="Patch file to write.")],
    no_full: Annotated[
        bool, typer.Option("--no-full", help="Always write a delta, even when larger.")
    ] = False,
) -> None:
    """Write PATCH, which rebuilds NEW from OLD."""
    try:
        info = encode(old, new, patch, allow_full=not no_full)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    typer.echo(_describe(info))


@delta_app.command("apply")
def apply(
    old: ExistingFile,
    patch: ExistingFile,
    out: Annotated[Path, typer.Argument(dir_okay=False, help="Image file to write.")],
) -> None:
    """Rebuild the new image from OLD and PATCH into OUT (written only if it verifies)."""
    fd, tmp = tempfile.mkstemp(dir=out.resolve().parent, prefix=f".{out.name}.")
    try:
        with old.open("rb") as source, patch.open("rb") as p, os.fdopen(fd, "wb") as dst:
            decoder = DeltaDecoder(source, p)
            decoder.verify_source()
            info = decoder.apply(dst.write)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out)
    except OTAGuardError as exc:
        raise _fail(exc) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    typer.echo(f"{out}: {info.target_size} bytes, sha256 {info.target_sha256} verified")


@delta_app.command("info")
def info(patch: ExistingFile) -> None:
    """Show what PATCH needs and rebuilds."""
    try:
        with patch.open("rb") as p:
            typer.echo(_describe(DeltaDecoder(None, p).info))
    except OTAGuardError as exc:
        raise _fail(exc) from exc
