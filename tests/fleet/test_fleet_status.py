"""Exhaustive checks of the server-side status rules (every status x every event)."""

from __future__ import annotations

import itertools

import pytest

from otaguard.fleet.status import (
    FAILURE_EVENTS,
    DeploymentState,
    TargetStatus,
    UpdateEvent,
    deployment_state_after,
    is_offered,
    target_status_after,
)


def expected(current: TargetStatus, event: UpdateEvent) -> TargetStatus:
    if current is TargetStatus.CANCELLED or current is TargetStatus.FAILED:
        return current
    if current is TargetStatus.SUCCEEDED:
        return TargetStatus.FAILED if event is UpdateEvent.ROLLED_BACK else current
    if event is UpdateEvent.COMMITTED:
        return TargetStatus.SUCCEEDED
    if event in FAILURE_EVENTS:
        return TargetStatus.FAILED
    return TargetStatus.IN_PROGRESS


@pytest.mark.parametrize(("status", "event"), list(itertools.product(TargetStatus, UpdateEvent)))
def test_every_status_and_event(status: TargetStatus, event: UpdateEvent) -> None:
    assert target_status_after(status, event) is expected(status, event)


def test_success_needs_a_commit_report() -> None:
    s = TargetStatus.PENDING
    for ev in (
        UpdateEvent.DOWNLOADING,
        UpdateEvent.DOWNLOADED,
        UpdateEvent.INSTALLED,
        UpdateEvent.BOOTED,
    ):
        s = target_status_after(s, ev)
        assert s is TargetStatus.IN_PROGRESS
    assert target_status_after(s, UpdateEvent.COMMITTED) is TargetStatus.SUCCEEDED


def test_deployment_completes_only_when_all_final() -> None:
    active = DeploymentState.ACTIVE
    assert deployment_state_after(active, [TargetStatus.SUCCEEDED, TargetStatus.PENDING]) is active
    assert (
        deployment_state_after(active, [TargetStatus.SUCCEEDED, TargetStatus.FAILED])
        is DeploymentState.COMPLETED
    )
    for st in (DeploymentState.CANCELLED, DeploymentState.COMPLETED):
        assert deployment_state_after(st, [TargetStatus.PENDING]) is st


def test_offered_only_while_open() -> None:
    assert {s for s in TargetStatus if is_offered(s)} == {
        TargetStatus.PENDING,
        TargetStatus.IN_PROGRESS,
    }
