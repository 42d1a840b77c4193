"""The RBAC policy, exhaustively: every role x every action, and token scopes."""

from __future__ import annotations

import itertools

import pytest

from otaguard.identity.rbac import (
    ROLE_ACTIONS,
    Action,
    Role,
    decide,
    may_approve,
    parse_roles,
    parse_scopes,
)

# The policy as the issue states it, written independently of ROLE_ACTIONS: which roles may do
# each action (admin runs everything but approval; approval is the approver's alone).
READ = {"viewer", "release_manager", "deployer", "approver", "admin"}
EXPECTED: dict[str, set[str]] = {
    "repository.keys.read": READ,
    "release.read": READ,
    "device.read": READ,
    "deployment.read": READ,
    "group.read": READ,
    "token.self": READ,
    "repository.root.write": {"release_manager", "admin"},
    "repository.publish": {"release_manager", "admin"},
    "artifact.upload": {"release_manager", "admin"},
    "device.tags.write": {"deployer", "admin"},
    "deployment.create": {"deployer", "admin"},
    "deployment.cancel": {"deployer", "admin"},
    "deployment.retry": {"deployer", "admin"},
    "deployment.approve": {"approver"},
    "device.register": {"admin"},
    "enrollment.token.create": {"admin"},
    "device.certificate.revoke": {"admin"},
    "group.write": {"admin"},
    "user.manage": {"admin"},
    "user.read": {"admin"},
    "audit.read": {"admin"},
    # phased rollouts and monitoring (issue 12)
    "alert.read": READ,
    "deployment.control": {"deployer", "admin"},
    "alert.acknowledge": {"deployer", "admin"},
    "device.accept": {"deployer", "admin"},
    "device.decommission": {"admin"},
    "group.dynamic.write": {"deployer", "admin"},  # saved dynamic groups (issue 12, item 8)
}


def test_expected_table_names_every_action() -> None:
    assert set(EXPECTED) == {a.value for a in Action}


@pytest.mark.parametrize(
    ("role", "action"), list(itertools.product(list(Role), list(Action))), ids=str
)
def test_every_role_and_action(role: Role, action: Action) -> None:
    allowed = role.value in EXPECTED[action.value]
    assert decide({role}, {"*"}, action).allowed is allowed
    # a token scoped to exactly this action changes nothing; one scoped elsewhere refuses
    assert decide({role}, {action.value}, action).allowed is allowed
    other = next(a for a in Action if a is not action)
    assert decide({role}, {other.value}, action).allowed is False


def test_no_role_allows_nothing_and_roles_add_up() -> None:
    for action in Action:
        assert not decide(set(), {"*"}, action).allowed
    both = {Role.DEPLOYER, Role.APPROVER}
    assert decide(both, {"*"}, Action.DEPLOYMENT_CREATE).allowed
    assert decide(both, {"*"}, Action.DEPLOYMENT_APPROVE).allowed
    assert set().union(*ROLE_ACTIONS.values()) == set(Action)


def test_two_person_rule_decision() -> None:
    assert may_approve(approver="bob", approver_roles={Role.APPROVER}, created_by="alice").allowed
    own = may_approve(approver="alice", approver_roles={Role.APPROVER}, created_by="alice")
    assert not own.allowed
    assert "creator" in own.reason
    assert not may_approve(approver="root", approver_roles={Role.ADMIN}, created_by="alice").allowed


def test_unknown_roles_and_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        parse_roles(["root"])
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes(["deployment.nuke"])
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes([])
