"""Who may do what: roles, actions, and the route table that names each endpoint's action.

Pure: no I/O, no framework. The server asks ``decide`` for every management request; the
authorization matrix test walks the application's routes through ``ROUTE_ACTIONS``, so a route
added without an entry here is refused at run time (fail closed) and fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    RELEASE_MANAGER = "release_manager"
    DEPLOYER = "deployer"
    APPROVER = "approver"
    ADMIN = "admin"


class Action(StrEnum):
    """Everything an operator can ask the management API to do."""

    # read
    KEYS_READ = "repository.keys.read"
    RELEASE_READ = "release.read"
    DEVICE_READ = "device.read"
    DEPLOYMENT_READ = "deployment.read"
    # releases: maker-signed metadata and artifacts
    ROOT_WRITE = "repository.root.write"
    PUBLISH = "repository.publish"
    ARTIFACT_UPLOAD = "artifact.upload"
    # fleet and rollouts
    DEVICE_REGISTER = "device.register"
    DEVICE_TAGS = "device.tags.write"
    DEPLOYMENT_CREATE = "deployment.create"
    DEPLOYMENT_CANCEL = "deployment.cancel"
    DEPLOYMENT_APPROVE = "deployment.approve"
    DEPLOYMENT_CONTROL = "deployment.control"  # pause, resume, abort, advance a rollout
    ALERT_READ = "alert.read"
    ALERT_ACKNOWLEDGE = "alert.acknowledge"
    DEVICE_ACCEPT = "device.accept"  # let a newly enrolled device receive updates
    DEVICE_DECOMMISSION = "device.decommission"
    DEPLOYMENT_RETRY = "deployment.retry"  # offer a deployment again to a failed device
    # identities
    ENROLLMENT_TOKEN_CREATE = "enrollment.token.create"
    DEVICE_CERT_REVOKE = "device.certificate.revoke"
    GROUP_WRITE = "group.write"
    GROUP_READ = "group.read"
    DYNAMIC_GROUP_WRITE = "group.dynamic.write"  # save, change, delete a named device filter
    USER_MANAGE = "user.manage"
    USER_READ = "user.read"
    TOKEN_SELF = "token.self"  # create, list and revoke one's own API tokens
    AUDIT_READ = "audit.read"


READS = frozenset(
    {
        Action.KEYS_READ,
        Action.RELEASE_READ,
        Action.DEVICE_READ,
        Action.DEPLOYMENT_READ,
        Action.GROUP_READ,
        Action.TOKEN_SELF,
        Action.ALERT_READ,
    }
)

#: What each role may do. Roles add up (a user may hold several). ``admin`` runs the system but
#: may not approve deployments: approval is the approver's alone (two-person rule), so a second
#: person is needed even when the first is an administrator.
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: READS,
    Role.RELEASE_MANAGER: READS | {Action.ROOT_WRITE, Action.PUBLISH, Action.ARTIFACT_UPLOAD},
    Role.DEPLOYER: READS
    | {
        Action.DEVICE_TAGS,
        Action.DEPLOYMENT_CREATE,
        Action.DEPLOYMENT_CANCEL,
        Action.DEPLOYMENT_CONTROL,
        Action.ALERT_ACKNOWLEDGE,
        Action.DEVICE_ACCEPT,
        Action.DEPLOYMENT_RETRY,
        Action.DYNAMIC_GROUP_WRITE,
    },
    Role.APPROVER: READS | {Action.DEPLOYMENT_APPROVE},
    Role.ADMIN: frozenset(Action) - {Action.DEPLOYMENT_APPROVE},
}


class Access(StrEnum):
    """How a route is reached when it is not an operator action."""

    PUBLIC = "public"  # signed or public content (TUF metadata, CRL), health, login
    DEVICE = "device"  # a device authenticated by its certificate (or bearer credential)
    ENROLLMENT = "enrollment"  # a device with a one-time factory token, once


#: Every route of the application, by (method, path template): an operator action or an access
#: class. Kept next to the roles so one file says who may call what.
ROUTE_ACTIONS: dict[tuple[str, str], Action | Access] = {
    # device API
    ("POST", "/device/v1/checkin"): Access.DEVICE,
    ("POST", "/device/v1/events"): Access.DEVICE,
    ("POST", "/device/v1/health"): Access.DEVICE,
    ("GET", "/device/v1/deployments/{deployment_id}/state"): Access.DEVICE,
    ("POST", "/device/v1/renew"): Access.DEVICE,
    ("POST", "/device/v1/enroll"): Access.ENROLLMENT,
    # TUF repository and device PKI: public
    ("GET", "/tuf/metadata/{name}"): Access.PUBLIC,
    ("GET", "/tuf/targets/{path:path}"): Access.PUBLIC,
    ("GET", "/pki/device-ca.pem"): Access.PUBLIC,
    ("GET", "/pki/device-ca.crl"): Access.PUBLIC,
    ("GET", "/metrics"): Access.PUBLIC,
    ("GET", "/healthz"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("GET", "/docs"): Access.PUBLIC,
    ("GET", "/docs/oauth2-redirect"): Access.PUBLIC,
    ("GET", "/docs/assets/{name}"): Access.PUBLIC,
    ("POST", "/api/v1/auth/login"): Access.PUBLIC,
    # management API
    ("GET", "/api/v1/repository/online-keys"): Action.KEYS_READ,
    ("PUT", "/api/v1/repository/root"): Action.ROOT_WRITE,
    ("PUT", "/api/v1/repository/targets"): Action.PUBLISH,
    ("PUT", "/api/v1/repository/delegations"): Action.PUBLISH,
    ("PUT", "/api/v1/repository/delegations/{role}"): Action.PUBLISH,
    ("PUT", "/api/v1/artifacts/{sha256}"): Action.ARTIFACT_UPLOAD,
    ("GET", "/api/v1/releases"): Action.RELEASE_READ,
    ("GET", "/api/v1/releases/{target_name:path}"): Action.RELEASE_READ,
    ("POST", "/api/v1/devices"): Action.DEVICE_REGISTER,
    ("GET", "/api/v1/devices"): Action.DEVICE_READ,
    ("GET", "/api/v1/devices/{device_id}"): Action.DEVICE_READ,
    ("GET", "/api/v1/tags"): Action.DEVICE_READ,
    ("GET", "/api/v1/devices/{device_id}/events"): Action.DEVICE_READ,
    ("PUT", "/api/v1/devices/{device_id}/tags"): Action.DEVICE_TAGS,
    ("POST", "/api/v1/devices/{device_id}/revoke-certificates"): Action.DEVICE_CERT_REVOKE,
    ("GET", "/api/v1/devices/{device_id}/certificates"): Action.DEVICE_READ,
    ("POST", "/api/v1/devices/{device_id}/enrollment-token"): Action.ENROLLMENT_TOKEN_CREATE,
    ("POST", "/api/v1/deployments"): Action.DEPLOYMENT_CREATE,
    ("GET", "/api/v1/deployments"): Action.DEPLOYMENT_READ,
    ("GET", "/api/v1/deployments/{deployment_id}"): Action.DEPLOYMENT_READ,
    ("GET", "/api/v1/deployments/{deployment_id}/devices"): Action.DEPLOYMENT_READ,
    ("POST", "/api/v1/deployments/{deployment_id}/cancel"): Action.DEPLOYMENT_CANCEL,
    ("POST", "/api/v1/deployments/{deployment_id}/devices/{device_id}/retry"): (
        Action.DEPLOYMENT_RETRY
    ),
    ("POST", "/api/v1/deployments/{deployment_id}/approve"): Action.DEPLOYMENT_APPROVE,
    ("GET", "/api/v1/deployments/{deployment_id}/rollout"): Action.DEPLOYMENT_READ,
    ("POST", "/api/v1/deployments/{deployment_id}/pause"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/api/v1/deployments/{deployment_id}/resume"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/api/v1/deployments/{deployment_id}/abort"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/api/v1/deployments/{deployment_id}/advance"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/api/v1/deployments/{deployment_id}/evaluate"): Action.DEPLOYMENT_CONTROL,
    ("GET", "/api/v1/alerts"): Action.ALERT_READ,
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Action.ALERT_ACKNOWLEDGE,
    ("GET", "/api/v1/devices/{device_id}/timeline"): Action.DEVICE_READ,
    ("PUT", "/api/v1/devices/{device_id}/acceptance"): Action.DEVICE_ACCEPT,
    ("POST", "/api/v1/devices/{device_id}/decommission"): Action.DEVICE_DECOMMISSION,
    ("POST", "/api/v1/certificates/{serial}/revoke"): Action.DEVICE_CERT_REVOKE,
    ("GET", "/api/v1/groups"): Action.GROUP_READ,
    ("PUT", "/api/v1/groups/{tag}"): Action.GROUP_WRITE,
    ("POST", "/api/v1/dynamic-groups"): Action.DYNAMIC_GROUP_WRITE,
    ("GET", "/api/v1/dynamic-groups"): Action.GROUP_READ,
    ("GET", "/api/v1/dynamic-groups/{name}"): Action.GROUP_READ,
    ("PUT", "/api/v1/dynamic-groups/{name}"): Action.DYNAMIC_GROUP_WRITE,
    ("DELETE", "/api/v1/dynamic-groups/{name}"): Action.DYNAMIC_GROUP_WRITE,
    ("GET", "/api/v1/dynamic-groups/{name}/devices"): Action.GROUP_READ,
    ("GET", "/api/v1/users"): Action.USER_READ,
    ("POST", "/api/v1/users"): Action.USER_MANAGE,
    ("PUT", "/api/v1/users/{name}/roles"): Action.USER_MANAGE,
    ("PUT", "/api/v1/users/{name}/password"): Action.USER_MANAGE,
    ("POST", "/api/v1/auth/tokens"): Action.TOKEN_SELF,
    ("PUT", "/api/v1/auth/password"): Action.TOKEN_SELF,
    ("GET", "/api/v1/auth/tokens"): Action.TOKEN_SELF,
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): Action.TOKEN_SELF,
    ("GET", "/api/v1/audit"): Action.AUDIT_READ,
    # web console (server/console/): a session cookie instead of a bearer token, same actions
    ("GET", "/console"): Access.PUBLIC,
    ("GET", "/console/login"): Access.PUBLIC,
    ("POST", "/console/login"): Access.PUBLIC,
    ("POST", "/console/logout"): Access.PUBLIC,
    ("GET", "/console/static/{name}"): Access.PUBLIC,
    ("GET", "/console/"): Action.DEVICE_READ,
    ("GET", "/console/devices"): Action.DEVICE_READ,
    ("GET", "/console/devices/{device_id}"): Action.DEVICE_READ,
    ("POST", "/console/devices/{device_id}/tags"): Action.DEVICE_TAGS,
    ("GET", "/console/releases"): Action.RELEASE_READ,
    ("GET", "/console/deployments"): Action.DEPLOYMENT_READ,
    ("POST", "/console/deployments"): Action.DEPLOYMENT_CREATE,
    ("GET", "/console/deployments/{deployment_id}"): Action.DEPLOYMENT_READ,
    ("GET", "/console/deployments/{deployment_id}/progress"): Action.DEPLOYMENT_READ,
    ("POST", "/console/deployments/{deployment_id}/approve"): Action.DEPLOYMENT_APPROVE,
    ("POST", "/console/deployments/{deployment_id}/cancel"): Action.DEPLOYMENT_CANCEL,
    ("POST", "/console/deployments/{deployment_id}/pause"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/console/deployments/{deployment_id}/resume"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/console/deployments/{deployment_id}/advance"): Action.DEPLOYMENT_CONTROL,
    ("POST", "/console/deployments/{deployment_id}/abort"): Action.DEPLOYMENT_CONTROL,
    ("GET", "/console/alerts"): Action.ALERT_READ,
    ("POST", "/console/alerts/{alert_id}/acknowledge"): Action.ALERT_ACKNOWLEDGE,
    ("GET", "/console/audit"): Action.AUDIT_READ,
    ("GET", "/console/audit/export"): Action.AUDIT_READ,
    ("GET", "/console/operators"): Action.USER_READ,
    ("POST", "/console/operators"): Action.USER_MANAGE,
    ("POST", "/console/operators/{name}/roles"): Action.USER_MANAGE,
    ("POST", "/console/operators/tokens/{token_id}/revoke"): Action.USER_MANAGE,
    ("GET", "/console/tokens"): Action.TOKEN_SELF,
    ("POST", "/console/tokens/{token_id}/revoke"): Action.TOKEN_SELF,
}

#: a token scope that allows every action the holder's roles allow
ALL_SCOPES = "*"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Roles by name; raises ``ValueError`` naming an unknown one."""
    out = set()
    for name in names:
        try:
            out.add(Role(name))
        except ValueError:
            raise ValueError(
                f"unknown role {name!r} (roles: {', '.join(r.value for r in Role)})"
            ) from None
    return frozenset(out)


def parse_scopes(names: Iterable[str]) -> frozenset[str]:
    """Token scopes: ``*`` or action names; raises ``ValueError`` naming an unknown one."""
    out = set()
    for name in names:
        if name != ALL_SCOPES:
            try:
                Action(name)
            except ValueError:
                raise ValueError(f"unknown scope {name!r}: '*' or an action name") from None
        out.add(name)
    if not out:
        raise ValueError("a token needs at least one scope")
    return frozenset(out)


def role_allows(roles: Collection[Role], action: Action) -> bool:
    return any(action in ROLE_ACTIONS[r] for r in roles)


def decide(roles: Collection[Role], scopes: Collection[str], action: Action) -> Decision:
    """May a holder of ``roles``, using a token limited to ``scopes``, do ``action``?"""
    if not role_allows(roles, action):
        held = ", ".join(sorted(r.value for r in roles)) or "no role"
        return Decision(False, f"{action.value} is not allowed for {held}")
    if ALL_SCOPES not in scopes and action.value not in scopes:
        return Decision(False, f"this API token is not scoped for {action.value}")
    return Decision(True, "allowed")


def route_action(method: str, path: str) -> Action | Access | None:
    """The action (or access class) of a route template; None: unmapped (refused)."""
    if method == "HEAD":
        method = "GET"
    return ROUTE_ACTIONS.get((method, path))


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}", template):
        out += re.escape(template[pos : m.start()]) + (".+" if m.group(2) else "[^/]+")
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "$")


_COMPILED = [(method, _compile(path), policy) for (method, path), policy in ROUTE_ACTIONS.items()]


def request_action(method: str, path: str) -> Action | Access | None:
    """The policy of a concrete request path, by matching the route templates; None when no
    template or templates with different policies match (refused: fail closed)."""
    if method == "HEAD":
        method = "GET"
    found = {policy for m, rx, policy in _COMPILED if m == method and rx.match(path)}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class DutyFacts:
    """What separation of duties needs to know about one operator's account."""

    password_set_by_other: bool  # set or reset by someone else, not yet replaced by the user
    managed_by: frozenset[str]  # who created the account, set its roles or its password
    reset_by: frozenset[str]  # who reset a password the account already had


NO_FACTS = DutyFacts(False, frozenset(), frozenset())


def may_approve(
    *,
    approver: str,
    approver_roles: Collection[Role],
    created_by: str,
    approver_facts: DutyFacts = NO_FACTS,
    creator_facts: DutyFacts = NO_FACTS,
) -> Decision:
    """Two-person rule (docs/SECURITY.md, "Separation of duties"): a production deployment is
    approved by an approver who is not its creator, whose password is their own, and whose
    account neither the creator manages nor was reset by someone who manages the creator's;
    nor may the approver manage the creator's account (they could act as the creator)."""
    if not role_allows(approver_roles, Action.DEPLOYMENT_APPROVE):
        return Decision(False, "approval needs the approver role")
    if approver == created_by:
        return Decision(False, "the creator of a deployment cannot approve it")
    if approver_facts.password_set_by_other:
        return Decision(
            False, "the approver's password was set by someone else; they must set their own"
        )
    if created_by in approver_facts.managed_by:
        return Decision(False, "the creator of the deployment manages the approver's account")
    if approver in creator_facts.managed_by:
        return Decision(False, "the approver manages the account of the deployment's creator")
    shared = approver_facts.reset_by & (creator_facts.managed_by | {created_by})
    if shared:
        return Decision(
            False,
            f"the approver's password was reset by {sorted(shared)[0]}, who manages the "
            "creator's account",
        )
    return Decision(True, "allowed")


@dataclass(frozen=True)
class Principal:
    """An authenticated operator: name, roles and the scopes of the token used."""

    name: str
    roles: frozenset[Role]
    scopes: frozenset[str]
    token_id: str | None = None

    def decide(self, action: Action) -> Decision:
        return decide(self.roles, self.scopes, action)
