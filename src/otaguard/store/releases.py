"""Releases: the images the server may deploy, by TUF target name, with what they fit.

Why a module of its own: a release row is what deployments are checked against (hardware,
anti-rollback security version) and it is immutable in content: publishing the same target
name again with other bytes is refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from otaguard.errors import ConflictError, NotFoundError
from otaguard.store.engine import Database
from otaguard.store.models import Release
from otaguard.store.views import ReleaseView


class Releases:
    """Releases on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert_release(
        self,
        target_name: str,
        *,
        version: str,
        hardware: list[str],
        security_version: int,
        sha256: str,
        length: int,
        custom: dict[str, Any],
    ) -> ReleaseView:
        with self.db.session() as s:
            r = s.get(Release, target_name)
            if r is None:
                r = Release(target_name=target_name)
                s.add(r)
            elif r.sha256 != sha256:
                raise ConflictError(f"release {target_name} exists with other content")
            r.version, r.hardware, r.security_version = version, hardware, security_version
            r.sha256, r.length, r.custom = sha256, length, custom
            s.flush()
            return ReleaseView.of(r)

    def get_release(self, target_name: str) -> ReleaseView:
        with self.db.session(write=False) as s:
            r = s.get(Release, target_name)
            if r is None:
                raise NotFoundError(f"no release {target_name}")
            return ReleaseView.of(r)

    def list_releases(self) -> list[ReleaseView]:
        with self.db.session(write=False) as s:
            return [
                ReleaseView.of(r) for r in s.scalars(select(Release).order_by(Release.created_at))
            ]
