"""The pure update state machine: every state x every event, and what a boot implies."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from otaguard.agent.statemachine import (
    FINAL,
    TRANSITIONS,
    BootFacts,
    Event,
    InvalidTransition,
    State,
    boot_event,
    is_active,
    next_state,
)

S, E = State, Event

# Written out independently of TRANSITIONS: the specification the table must match.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.IDLE, E.CHECK): S.CHECKING,
    (S.IDLE, E.ACCEPT): S.DOWNLOADING,
    (S.CHECKING, E.NOTHING): S.IDLE,
    (S.CHECKING, E.REFUSE): S.IDLE,
    (S.CHECKING, E.ERROR): S.IDLE,
    (S.CHECKING, E.ACCEPT): S.DOWNLOADING,
    (S.DOWNLOADING, E.DOWNLOADED): S.VERIFYING,
    (S.DOWNLOADING, E.ERROR): S.FAILED,
    (S.DOWNLOADING, E.CANCEL): S.FAILED,
    (S.DOWNLOADING, E.DELTA_FALLBACK): S.DOWNLOADING,
    (S.VERIFYING, E.VERIFIED): S.INSTALLING,
    (S.VERIFYING, E.ERROR): S.FAILED,
    (S.VERIFYING, E.CANCEL): S.FAILED,
    (S.VERIFYING, E.DELTA_FALLBACK): S.DOWNLOADING,
    (S.INSTALLING, E.CANCEL): S.FAILED,  # waiting for a maintenance window
    (S.INSTALLING, E.INSTALLED): S.REBOOT_PENDING,
    (S.INSTALLING, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.INSTALLING, E.ERROR): S.FAILED,
    (S.REBOOT_PENDING, E.BOOTED_NEW): S.TRIAL,
    (S.REBOOT_PENDING, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.TRIAL, E.CHECK_HEALTH): S.HEALTH_CHECK,
    (S.TRIAL, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.HEALTH_CHECK, E.HEALTHY): S.COMMITTING,
    (S.HEALTH_CHECK, E.UNHEALTHY): S.ROLLING_BACK,
    (S.HEALTH_CHECK, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.COMMITTING, E.COMMIT_DONE): S.COMMITTED,
    (S.COMMITTING, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.ROLLING_BACK, E.BOOTED_OLD): S.ROLLED_BACK,
    (S.ROLLING_BACK, E.ERROR): S.FAILED,
    (S.COMMITTED, E.REPORTED): S.IDLE,
    (S.ROLLED_BACK, E.REPORTED): S.IDLE,
    (S.FAILED, E.REPORTED): S.IDLE,
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        assert next_state(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"{event.value}.*{state.value}"):
            next_state(state, event)


def test_table_has_nothing_beyond_the_specification() -> None:
    assert TRANSITIONS == EXPECTED


def test_every_state_is_reachable_and_every_update_ends_in_idle() -> None:
    graph: dict[State, set[State]] = {s: set() for s in State}
    for (src, _), dst in TRANSITIONS.items():
        graph[src].add(dst)
    seen = {S.IDLE}
    todo = deque([S.IDLE])
    while todo:
        for nxt in graph[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)
    # No dead ends: from every state some path leads back to idle.
    for start in State:
        reach, todo = {start}, deque([start])
        while todo:
            for nxt in graph[todo.popleft()]:
                if nxt not in reach:
                    reach.add(nxt)
                    todo.append(nxt)
        assert S.IDLE in reach, start
    # Final states lead only to idle, and only by reporting.
    for final in FINAL:
        assert {e for (s, e) in TRANSITIONS if s is final} == {E.REPORTED}


def test_the_happy_path_and_the_rollback_path() -> None:
    def walk(events: list[Event]) -> State:
        state = S.IDLE
        for ev in events:
            state = next_state(state, ev)
        return state

    update = [E.CHECK, E.ACCEPT, E.DOWNLOADED, E.VERIFIED, E.INSTALLED, E.BOOTED_NEW]
    assert walk([*update, E.CHECK_HEALTH, E.HEALTHY]) is S.COMMITTING
    assert walk([*update, E.CHECK_HEALTH, E.HEALTHY, E.COMMIT_DONE]) is S.COMMITTED
    assert walk([*update, E.CHECK_HEALTH, E.UNHEALTHY, E.BOOTED_OLD]) is S.ROLLED_BACK
    # A crashing image never confirms; the bootloader falls back.
    assert walk([*update, E.CHECK_HEALTH, E.BOOTED_OLD, E.REPORTED]) is S.IDLE


def test_active_states() -> None:
    assert {s for s in State if is_active(s)} == {
        S.DOWNLOADING,
        S.VERIFYING,
        S.INSTALLING,
        S.REBOOT_PENDING,
        S.TRIAL,
        S.HEALTH_CHECK,
        S.COMMITTING,
        S.ROLLING_BACK,
    }


ALL_FACTS = [BootFacts(*bits) for bits in itertools.product([False, True], repeat=5)]


@pytest.mark.parametrize("state", list(State))
def test_boot_event_is_always_a_legal_transition_and_settles(state: State) -> None:
    for facts in ALL_FACTS:
        current, steps = state, 0
        while (ev := boot_event(current, facts)) is not None:
            current = next_state(current, ev)  # raises if boot_event proposed an illegal event
            steps += 1
            assert steps <= 3, (state, facts)
        # Settling never leaves an update stuck waiting for a reboot that already happened on
        # the target slot.
        if facts.on_target:
            assert current is not S.REBOOT_PENDING


def f(**kw: bool) -> BootFacts:
    base = {"on_target": False, "trial": False, "fell_back": False, "switch_done": False}
    base["env_on_target"] = False
    base.update(kw)
    return BootFacts(**base)


@pytest.mark.parametrize(
    ("state", "facts", "event"),
    [
        (S.IDLE, f(), None),
        (S.DOWNLOADING, f(), None),  # resume the download
        (S.DOWNLOADING, f(on_target=True, fell_back=True), E.ERROR),  # never write a running slot
        (S.VERIFYING, f(), None),
        (S.INSTALLING, f(), None),  # cut before the env switch: switch again
        (S.INSTALLING, f(switch_done=True, env_on_target=True), E.INSTALLED),  # restart, no reboot
        (S.INSTALLING, f(on_target=True, trial=True, switch_done=True), E.INSTALLED),
        (S.INSTALLING, f(switch_done=True), E.BOOTED_OLD),  # switched, then fell back
        (S.INSTALLING, f(on_target=True), E.ERROR),
        (S.REBOOT_PENDING, f(on_target=True, trial=True), E.BOOTED_NEW),
        (S.REBOOT_PENDING, f(switch_done=True, env_on_target=True), None),  # reboot still due
        (S.REBOOT_PENDING, f(switch_done=True, fell_back=True), E.BOOTED_OLD),
        (S.REBOOT_PENDING, f(switch_done=True), E.BOOTED_OLD),  # fell back, cut before we knew
        (S.TRIAL, f(on_target=True, trial=True), None),
        (S.TRIAL, f(fell_back=True), E.BOOTED_OLD),
        (S.HEALTH_CHECK, f(on_target=True, trial=True), None),  # run the health check again
        (S.HEALTH_CHECK, f(fell_back=True), E.BOOTED_OLD),  # bootlimit exceeded
        (S.COMMITTING, f(on_target=True, trial=True), None),  # finish the commit
        (S.COMMITTING, f(on_target=True), None),
        (S.COMMITTING, f(fell_back=True), E.BOOTED_OLD),
        (S.ROLLING_BACK, f(on_target=True, trial=True), None),  # revert again
        (S.ROLLING_BACK, f(), E.BOOTED_OLD),
        (S.ROLLING_BACK, f(on_target=True, fell_back=True), E.ERROR),  # old slot unbootable
        (S.COMMITTED, f(on_target=True), None),
        (S.ROLLED_BACK, f(), None),
        (S.FAILED, f(), None),
    ],
)
def test_boot_event_decisions(state: State, facts: BootFacts, event: Event | None) -> None:
    assert boot_event(state, facts) is event
