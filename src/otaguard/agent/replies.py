"""The server's replies to the device, parsed at the boundary into typed values.

Everything the agent reads from the device API passes through here first: the check-in answer
(with the director assignment it wraps) and a deployment's state. A reply of the wrong shape is
refused as a whole with ``ReplyError`` (a ``DownloadError``: the agent retries on a later poll)
rather than half-read; the assignment inside stays bytes, for ``agent/acceptance.py`` to verify.
Pure: JSON text in, a value or an error out.
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.errors import ReplyError
from otaguard.net.replies import parse_json_object


@dataclass(frozen=True)
class CheckInReply:
    """``POST /device/v1/checkin``: an update offer (``assignment`` set) or nothing to do."""

    assignment: bytes | None  # the director-signed assignment, still to be verified
    deployment_id: int | None  # names the deployment in a refusal report before verification


def parse_check_in(body: bytes | str) -> CheckInReply:
    """Parse a check-in answer. Only ``action == "update"`` with a non-empty assignment is an
    offer; any other action means nothing to do.

    Raises:
        ReplyError: not a JSON object, or ``assignment`` not a string, or ``deployment_id``
            neither an integer nor null.
    """
    data = parse_json_object(body, "check-in")
    assignment = data.get("assignment")
    if assignment is not None and not isinstance(assignment, str):
        raise ReplyError("check-in: assignment must be a string")
    dep = data.get("deployment_id")
    if dep is not None and (isinstance(dep, bool) or not isinstance(dep, int)):
        raise ReplyError("check-in: deployment_id must be an integer")
    if data.get("action") != "update" or not assignment:
        return CheckInReply(None, None)
    return CheckInReply(assignment.encode(), dep)


@dataclass(frozen=True)
class DeploymentState:
    """``GET /device/v1/deployments/{id}/state``: whether the deployment still stands."""

    cancelled: bool


def parse_deployment_state(body: bytes | str) -> DeploymentState:
    """Parse a deployment's state; cancelled when ``state`` or ``status`` says so.

    Raises:
        ReplyError: not a JSON object.
    """
    data = parse_json_object(body, "deployment state")
    return DeploymentState("cancelled" in (data.get("state"), data.get("status")))
