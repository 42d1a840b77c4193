"""A small client of the management API, used by the CLI, the demo and tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from otaguard.agent.transport import tls_context
from otaguard.errors import OTAGuardError, RepositoryError
from otaguard.repo.images import sha256_of
from otaguard.repo.maker import MakerRepository


class ApiError(OTAGuardError):
    code = "api"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


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
        targets = repo.targets().signed.targets
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
        result: dict[str, Any] = self._call(
            "PUT", "/api/v1/repository/targets", content=bundle["targets"]
        )
        return result

    def register_device(self, device_id: str, hardware: str, tags: list[str] | None = None) -> str:
        r = self._call(
            "POST",
            "/api/v1/devices",
            json={"id": device_id, "hardware": hardware, "tags": tags or []},
        )
        return str(r["credential"])

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

    def deployment_devices(self, deployment_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", f"/api/v1/deployments/{deployment_id}/devices"
        )
        return result

    def device(self, device_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/devices/{device_id}")
        return result
