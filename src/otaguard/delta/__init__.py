"""Delta updates: a patch that rebuilds a new image from the one a device already runs.

Sides: ``encoder`` runs on the maker's workstation (where releases are signed; it needs the
whole of both images in memory); ``decoder`` runs on the device (bounded memory, streaming,
resumable at segment boundaries). ``container``, ``ops`` and ``codec`` are the format, shared by
both. This package imports nothing from ``agent``, ``server``, ``store`` or ``identity``: they
call it. A device feeds a patch to the decoder only after TUF verified the patch file, and
trusts the result only once its sha256 equals the signed full-image hash.

API:

* ``encode(old_path, new_path, out_path) -> DeltaInfo`` (falls back to a full image when the
  delta does not pay);
* ``DeltaDecoder(source_file, patch_file, expected_target_sha256=...)``, then
  ``.apply(write, resume=Checkpoint, written=slot_file, on_checkpoint=...)``;
* ``DeltaInfo.custom()``: the fields for the delta target's signed custom metadata.
"""

from otaguard.delta.container import Algorithm
from otaguard.delta.decoder import DeltaDecoder
from otaguard.delta.encoder import encode
from otaguard.delta.info import Checkpoint, DeltaInfo

__all__ = ["Algorithm", "Checkpoint", "DeltaDecoder", "DeltaInfo", "encode"]
