"""The operator's side of every management route, for ``otaguard mgmt`` (and whoever else).

``ManagementClient`` (api_client.py) holds the maker's publishing flow and what the demo needs;
this subclass adds one method per management route, so the CLI names operations, not URLs.
Replies are returned as the server's JSON (the CLI prints them as tables or as they are with
``--json``); errors raise ``ApiError`` with the server's status and message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from otaguard.api_client import ManagementClient
from otaguard.errors import ApiError
from otaguard.net.tls import tls_context

#: largest page the server gives (its ``limit`` bound)
PAGE_MAX = 1000


def login(
    server: str, username: str, password: str, ca_file: Path | None, timeout: float = 30.0
) -> dict[str, Any]:
    """Password login: ``{"id", "token", "expires_at"}``. The password goes only in the body.

    Raises:
        ApiError: refused (401: wrong name or password, or the account is locked; 429: too
            many failures from this address).
        httpx.HTTPError: the server cannot be reached.
    """
    verify = tls_context(ca_file) if ca_file else True
    with httpx.Client(base_url=server, verify=verify, timeout=timeout) as http:
        r = http.post("/api/v1/auth/login", json={"username": username, "password": password})
    if r.status_code >= 400:
        raise ApiError(r.status_code, _detail(r))
    result: dict[str, Any] = r.json()
    return result


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:500]
    except ValueError:
        return r.text[:500]


def _path(value: str) -> str:
    """One path segment, escaped (device ids and tags are validated by the server)."""
    return quote(value, safe="")


class FleetClient(ManagementClient):
    """One method per management route (see ``identity/rbac.py`` ROUTE_ACTIONS)."""

    def _get(self, url: str, **params: Any) -> Any:
        return self._call("GET", url, params={k: v for k, v in params.items() if v is not None})

    # -- devices ----------------------------------------------------------------------------
    def devices(self, **filters: Any) -> dict[str, Any]:
        """One page: ``hardware``, ``tag``, ``version``, ``state``, ``limit``, ``offset``."""
        result: dict[str, Any] = self._get("/api/v1/devices", **filters)
        return result

    def device_events(
        self, device_id: str, limit: int = 100, before: int | None = None
    ) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/events"
        result: dict[str, Any] = self._get(url, limit=limit, before=before)
        return result

    def set_device_tags(self, device_id: str, tags: list[str]) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/tags"
        result: dict[str, Any] = self._call("PUT", url, json={"tags": tags})
        return result

    def device_certificates(self, device_id: str) -> list[dict[str, Any]]:
        url = f"/api/v1/devices/{_path(device_id)}/certificates"
        result: list[dict[str, Any]] = self._call("GET", url)
        return result

    def revoke_device_certificates(self, device_id: str) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/revoke-certificates"
        result: dict[str, Any] = self._call("POST", url)
        return result

    def revoke_certificate(self, serial: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/certificates/{_path(serial)}/revoke")
        return result

    def enrollment_token_reply(self, device_id: str, ttl_seconds: int) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/enrollment-token"
        result: dict[str, Any] = self._call("POST", url, json={"ttl_seconds": ttl_seconds})
        return result

    def tags(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/tags")
        return result

    # -- groups -----------------------------------------------------------------------------
    def production_groups(self) -> list[str]:
        return [str(t) for t in self._call("GET", "/api/v1/groups")["production"]]

    def set_production_group(self, tag: str, production: bool) -> list[str]:
        body = {"production": production}
        reply = self._call("PUT", f"/api/v1/groups/{_path(tag)}", json=body)
        return [str(t) for t in reply["production"]]

    # -- releases ---------------------------------------------------------------------------
    def releases(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/releases")
        return result

    def release(self, target_name: str) -> dict[str, Any]:
        # target names hold "/": the route takes the rest of the path
        url = "/api/v1/releases/" + quote(target_name, safe="/")
        result: dict[str, Any] = self._call("GET", url)
        return result

    # -- deployments ------------------------------------------------------------------------
    def deployments(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._get(
            "/api/v1/deployments", state=state, limit=limit, offset=offset
        )
        return result

    def deployment_devices_page(
        self,
        deployment_id: int,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        state: str | None = None,
    ) -> dict[str, Any]:
        url = f"/api/v1/deployments/{deployment_id}/devices"
        result: dict[str, Any] = self._get(
            url, status=status, state=state, limit=limit, offset=offset
        )
        return result

    def approve_deployment(self, deployment_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/deployments/{deployment_id}/approve")
        return result

    def cancel_deployment(self, deployment_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/deployments/{deployment_id}/cancel")
        return result

    # -- operators, tokens, audit -----------------------------------------------------------
    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/users")
        return result

    def add_user(self, name: str, roles: list[str], password: str | None) -> dict[str, Any]:
        body = {"name": name, "roles": roles, "password": password}
        result: dict[str, Any] = self._call("POST", "/api/v1/users", json=body)
        return result

    def set_user_roles(self, name: str, roles: list[str]) -> dict[str, Any]:
        url = f"/api/v1/users/{_path(name)}/roles"
        result: dict[str, Any] = self._call("PUT", url, json={"roles": roles})
        return result

    def set_user_password(self, name: str, password: str) -> dict[str, Any]:
        url = f"/api/v1/users/{_path(name)}/password"
        result: dict[str, Any] = self._call("PUT", url, json={"password": password})
        return result

    def tokens(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/auth/tokens")
        return result

    def create_token(self, scopes: list[str], ttl_seconds: int, label: str) -> dict[str, Any]:
        body = {"scopes": scopes, "ttl_seconds": ttl_seconds, "label": label}
        result: dict[str, Any] = self._call("POST", "/api/v1/auth/tokens", json=body)
        return result

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/api/v1/auth/tokens/{_path(token_id)}")

    def audit(self, after: int = 0, limit: int = PAGE_MAX) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/audit", after=after, limit=limit)
        return result

    def audit_all(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every audit entry with ``seq > after``, in order, page by page."""
        while page := self.audit(after=after, limit=PAGE_MAX):
            yield from page
            after = int(page[-1]["seq"])


class RolloutClient(FleetClient):
    """The routes of phased rollouts, alerts and device lifecycle (issue 12), and an operator's
    own password: one method per route, like ``FleetClient``."""

    def create_phased_deployment(
        self, name: str, target_name: str, selector: dict[str, Any], plan: Any | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "target_name": target_name, "selector": selector}
        if plan is not None:
            body["plan"] = plan
        result: dict[str, Any] = self._call("POST", "/api/v1/deployments", json=body)
        return result

    def rollout(self, deployment_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/deployments/{deployment_id}/rollout")
        return result

    def control(self, deployment_id: int, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        """``verb``: pause, resume, abort, advance or evaluate."""
        url = f"/api/v1/deployments/{deployment_id}/{verb}"
        result: dict[str, Any] = self._call("POST", url, json=body if verb != "evaluate" else None)
        return result

    def retry_device(self, deployment_id: int, device_id: str) -> dict[str, Any]:
        url = f"/api/v1/deployments/{deployment_id}/devices/{_path(device_id)}/retry"
        result: dict[str, Any] = self._call("POST", url)
        return result

    def alerts(self, **filters: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/v1/alerts", **filters)
        return result

    def acknowledge_alert(self, alert_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/alerts/{alert_id}/acknowledge")
        return result

    def timeline(self, device_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", f"/api/v1/devices/{_path(device_id)}/timeline"
        )
        return result

    def set_acceptance(self, device_id: str, accepted: bool) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/acceptance"
        result: dict[str, Any] = self._call("PUT", url, json={"accepted": accepted})
        return result

    def decommission(self, device_id: str) -> dict[str, Any]:
        url = f"/api/v1/devices/{_path(device_id)}/decommission"
        result: dict[str, Any] = self._call("POST", url)
        return result

    def change_own_password(self, current: str, new: str) -> None:
        self._call("PUT", "/api/v1/auth/password", json={"current": current, "new": new})


class GroupClient(RolloutClient):
    """The saved dynamic group routes (``/api/v1/dynamic-groups``), one method per route."""

    def dynamic_groups(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/v1/dynamic-groups", limit=limit, offset=offset)
        return result

    def dynamic_group(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/dynamic-groups/{_path(name)}")
        return result

    def create_dynamic_group(
        self, name: str, group_filter: dict[str, Any], description: str = ""
    ) -> dict[str, Any]:
        body = {"name": name, "description": description, "filter": group_filter}
        result: dict[str, Any] = self._call("POST", "/api/v1/dynamic-groups", json=body)
        return result

    def update_dynamic_group(
        self, name: str, group_filter: dict[str, Any], description: str = ""
    ) -> dict[str, Any]:
        body = {"description": description, "filter": group_filter}
        url = f"/api/v1/dynamic-groups/{_path(name)}"
        result: dict[str, Any] = self._call("PUT", url, json=body)
        return result

    def delete_dynamic_group(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/dynamic-groups/{_path(name)}")

    def dynamic_group_devices(self, name: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        url = f"/api/v1/dynamic-groups/{_path(name)}/devices"
        result: dict[str, Any] = self._get(url, limit=limit, offset=offset)
        return result
