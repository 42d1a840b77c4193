"""The maker's TUF repository as the device sees it: refresh, then the signed target.

``tuf.ngclient.Updater`` does every check of the TUF client workflow; this module only anchors
it (the cached root, or the factory root when there is none or the cache is damaged), points
it at the repository through our fetcher (``net/fetcher.py``) and maps its errors onto ours:
a repository that cannot be reached is a transient ``DownloadError``, one that does not verify
a ``VerificationError`` the device refuses.
"""

from __future__ import annotations

import logging

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from otaguard.agent.config import AgentConfig
from otaguard.errors import DownloadError, VerificationError
from otaguard.net.fetcher import HttpxFetcher

log = logging.getLogger(__name__)


def updater(config: AgentConfig, client: httpx.Client) -> Updater:
    """An ``Updater`` over ``client``, from the cached trusted root or the factory root."""
    config.tuf_dir.mkdir(parents=True, exist_ok=True)
    base = (config.repository_url or config.server_url).rstrip("/")

    def make(bootstrap: bytes | None) -> Updater:
        return Updater(
            metadata_dir=str(config.tuf_dir),
            metadata_base_url=f"{base}/tuf/metadata/",
            target_base_url=f"{base}/tuf/targets/",
            target_dir=str(config.state_dir / "targets"),
            fetcher=HttpxFetcher(client),
            bootstrap=bootstrap,
        )

    factory_root = config.trusted_root_file.read_bytes()
    if not (config.tuf_dir / "root.json").exists():
        return make(factory_root)
    try:
        return make(None)
    except (tuf_exc.RepositoryError, ValueError, OSError) as exc:
        # A damaged cache: start again from the factory root, which walks the signed
        # root rotations forward again (no trust is lost, only the cache).
        log.warning("cached TUF root unusable (%s); starting from the factory root", exc)
        return make(factory_root)


def trusted_target(config: AgentConfig, client: httpx.Client, path: str) -> TargetFile:
    """Refresh the maker's TUF repository and return the signed description of ``path``.

    Raises:
        DownloadError: the repository's metadata cannot be fetched (retry later).
        VerificationError: the metadata does not verify, or ``path`` is not a signed target.
    """
    try:
        up = updater(config, client)
        up.refresh()
        info = up.get_targetinfo(path)
    except tuf_exc.DownloadError as exc:
        raise DownloadError(f"repository metadata unavailable: {exc}") from exc
    except tuf_exc.ExpiredMetadataError as exc:
        # Signed, but expired: a stale mirror or a server that has not re-signed yet.
        # Transient: nothing expired is trusted, and a later refresh may find fresh metadata.
        # (Versions going backwards or not matching snapshot stay refusals: rollback and
        # mix-and-match attacks.)
        raise DownloadError(f"repository metadata expired or stale: {exc}") from exc
    except (tuf_exc.RepositoryError, ValueError) as exc:
        raise VerificationError(f"repository metadata rejected: {exc}") from exc
    if info is None:
        raise VerificationError(f"target {path} is not in the maker-signed repository")
    return info
