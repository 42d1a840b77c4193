"""The agent's requests to the device API, with every reply parsed at this edge.

Thin I/O: one method per request, ``agent/replies.py`` turns the bodies into typed values, and
failures become ``otaguard.errors`` (``DownloadError``, ``permanent`` for a 4xx) so the agent's
sequencing never sees httpx or raw JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from otaguard.agent.replies import (
    CheckInReply,
    DeploymentState,
    parse_check_in,
    parse_deployment_state,
)
from otaguard.errors import DownloadError, ReplyError

log = logging.getLogger(__name__)


class DeviceApi:
    """The device's view of ``/device/v1`` over an authenticated client."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def check_in(self, body: dict[str, Any]) -> CheckInReply:
        """Send a signed version manifest; return the parsed answer.

        Raises:
            DownloadError: unreachable, or an error status (``permanent`` for 4xx).
            ReplyError: the answer is malformed.
        """
        try:
            r = self.client.post("/device/v1/checkin", json=body)
        except httpx.HTTPError as exc:
            raise DownloadError(f"check-in failed: {exc}") from exc
        if r.status_code != 200:
            raise DownloadError(
                f"check-in refused: HTTP {r.status_code} {r.text[:200]}",
                permanent=400 <= r.status_code < 500,
            )
        return parse_check_in(r.content)

    def deployment_state(self, deployment_id: int) -> DeploymentState | None:
        """The deployment's state, or None when it cannot be learnt now (unknown counts as
        not cancelled: a flaky network must not stop an update)."""
        try:
            r = self.client.get(f"/device/v1/deployments/{deployment_id}/state")
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        try:
            return parse_deployment_state(r.content)
        except ReplyError as exc:
            log.warning("deployment state ignored: %s", exc)
            return None

    def send_report(self, item: dict[str, Any]) -> bool:
        """Post one queued report; True when the server has dealt with it (stored, or
        rejected for good with a 4xx), False to keep it queued (unreachable, 5xx)."""
        try:
            r = self.client.post("/device/v1/events", json=item)
        except httpx.HTTPError as exc:
            log.warning("report not delivered yet: %s", exc)
            return False
        if r.status_code >= 500:
            return False
        if r.status_code >= 400:
            log.error("server rejected report %s: %s", item["event"], r.text[:200])
        return True

    def send_health(self, body: dict[str, Any]) -> bool:
        """Post one health report; True when the server has dealt with it (stored, or refused
        for good with a 4xx, logged: the next report is due soon anyway); False when it is
        unreachable or failed (5xx): the report is due again at the next poll."""
        try:
            r = self.client.post("/device/v1/health", json=body)
        except httpx.HTTPError as exc:
            log.warning("health report not delivered yet: %s", exc)
            return False
        if r.status_code >= 500:
            return False
        if r.status_code >= 400:
            log.error("server rejected health report: %s", r.text[:200])
        return True
