"""What an operator reads when the server says no: one line, the server's reason kept.

Pure: a status and the server's ``detail`` in, a sentence out. The server's refusals come from
``identity/rbac.py`` (``"<action> is not allowed for <roles>"``, ``"this API token is not scoped
for <action>"``) and from the store (the two-person rule, conflicts, validation); the CLI names
the role and the action in the operator's terms instead of an HTTP status.
"""

from __future__ import annotations

import re

_NOT_ALLOWED = re.compile(r"^(?P<action>[a-z_.]+) is not allowed for (?P<roles>.+)$")
_NOT_SCOPED = re.compile(r"^this API token is not scoped for (?P<action>[a-z_.]+)$")


def explain(status: int, detail: str, *, context: str | None = None) -> str:
    """The message for a refused request (``context``: the login used, for the hint)."""
    detail = " ".join(detail.split())
    if status == 401:
        again = f"otaguard login --context {context}" if context else "otaguard login"
        return f"not logged in or token expired ({detail}): run `{again}`"
    if status == 403:
        return _forbidden(detail)
    if status == 404:
        return f"not found: {detail}"
    if status == 409:
        return f"conflict: {detail}"
    if status in (400, 422):
        return f"refused: {detail}"
    if status == 429:
        return f"too many failed attempts: {detail}"
    return f"server error (HTTP {status}): {detail}"


def _forbidden(detail: str) -> str:
    if m := _NOT_ALLOWED.match(detail):
        roles = m["roles"]
        who = "with no role you" if roles == "no role" else _your_roles(roles)
        return f"forbidden: {who} may not do {m['action']}"
    if m := _NOT_SCOPED.match(detail):
        return f"forbidden: your API token is not scoped for {m['action']}"
    return f"forbidden: {detail}"


def _your_roles(roles: str) -> str:
    plural = "s" if "," in roles else ""
    return f"your role{plural} {roles}"
