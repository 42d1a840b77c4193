"""A small client of the management API, used by the CLI, the demo and tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from otaguard.errors import ApiError, RepositoryError
from otaguard.net.tls import tls_context
from otaguard.repo.images import sha256_of
from otaguard.repo.maker import MakerRepository


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


#: largest request body of one batch of targets roles (the server takes up to 8 MiB)
BATCH_BYTES = 4 << 20


class ManagementClient:
    def __init__(self, base_url: str, token: str, ca_file: Path | None, timeout: float = 60.0):
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            verify=tls_context(ca_file) if ca_file else True,
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        r = self.http.request(method, url, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, str(detail)[:500])
        return r.json() if r.content else None

    def online_keys(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/v1/repository/online-keys")
        return result

    def publish(self, repo: MakerRepository) -> dict[str, Any]:
        """Upload roots, then artifacts, then targets (the server checks each in that order)."""
        bundle = repo.publish_bundle()
        for root in bundle["roots"]:
            self._call("PUT", "/api/v1/repository/root", content=root)
        targets = repo.all_targets()
        for name, path in bundle["images"].items():
            digest = sha256_of(targets[name])
            if not path.exists():
                raise RepositoryError(f"staged image for {name} is missing")
            self._call(
                "PUT",
                f"/api/v1/artifacts/{digest}",
                content=_file_chunks(path),
                headers={"Content-Type": "application/octet-stream"},
            )
        return self._publish_roles({"targets": bundle["targets"], **bundle["delegations"]})

    def published_versions(self) -> dict[str, int]:
        """Targets roles the server's current snapshot lists, with their versions."""
        ts = self.http.get("/tuf/metadata/timestamp.json")
        if ts.status_code == 404:
            return {}
        if ts.status_code != 200:
            raise ApiError(ts.status_code, ts.text[:500])
        version = ts.json()["signed"]["meta"]["snapshot.json"]["version"]
        snap = self.http.get(f"/tuf/metadata/{version}.snapshot.json")
        if snap.status_code != 200:
            raise ApiError(snap.status_code, snap.text[:500])
        meta = snap.json()["signed"]["meta"]
        return {name.removesuffix(".json"): int(m["version"]) for name, m in meta.items()}

    def _publish_roles(self, roles: dict[str, bytes]) -> dict[str, Any]:
        """Send the roles newer than the server's, delegators first, in batches that each get
        one snapshot; plain targets-only changes go to ``PUT /repository/targets``."""
        published = self.published_versions()

        def version(data: bytes) -> int:
            return int(json.loads(data)["signed"]["version"])

        newer = {r: d for r, d in roles.items() if version(d) > published.get(r, 0)}
        if set(newer) <= {"targets"}:  # also reports "not newer" when nothing changed
            result: dict[str, Any] = self._call(
                "PUT", "/api/v1/repository/targets", content=roles["targets"]
            )
            return result
        batches: list[dict[str, Any]] = [{}]
        size = 0
        for role, data in newer.items():
            if batches[-1] and size + len(data) > BATCH_BYTES:
                batches.append({})
                size = 0
            batches[-1][role] = json.loads(data)
            size += len(data)
        added: list[str] = []
        versions: dict[str, int] = {}
        for batch in batches:
            result = self._call("PUT", "/api/v1/repository/delegations", json={"roles": batch})
            added += result["added"]
            versions.update(result["roles"])
        result["added"], result["roles"] = sorted(added), versions
        return result

    def register_device(
        self,
        device_id: str,
        hardware: str,
        tags: list[str] | None = None,
        *,
        manifest_key: dict[str, Any] | None = None,
    ) -> str:
        body: dict[str, Any] = {"id": device_id, "hardware": hardware, "tags": tags or []}
        if manifest_key is not None:
            body["manifest_key"] = manifest_key
        r = self._call("POST", "/api/v1/devices", json=body)
        return str(r["credential"])

    def enrollment_token(self, device_id: str, ttl_seconds: int = 3600) -> str:
        """A one-time token with which ``device_id`` enrolls its own key (device CA)."""
        body = {"ttl_seconds": ttl_seconds}
        r = self._call("POST", f"/api/v1/devices/{device_id}/enrollment-token", json=body)
        return str(r["token"])

    def create_deployment(
        self, name: str, target_name: str, selector: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/api/v1/deployments",
            json={"name": name, "target_name": target_name, "selector": selector},
        )
        return result

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/deployments/{deployment_id}")
        return result

    def deployment_devices(
        self, deployment_id: int, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Every device of the deployment (all pages), optionally only those with ``status``."""
        items: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": 1000, "offset": len(items)}
            if status is not None:
                params["status"] = status
            page = self._call("GET", f"/api/v1/deployments/{deployment_id}/devices", params=params)
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["total"]:
                return items

    def device(self, device_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/devices/{device_id}")
        return result
