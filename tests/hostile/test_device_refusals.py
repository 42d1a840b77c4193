"""Refused device requests (issue 11 items 4 and 10): limited per address, audited once per
address and window with the address as actor, and a valid credential from a limited address
is still served."""

from __future__ import annotations

from otaguard.identity.refusal_tally import OTHER_ADDRESSES, RefusalTally

from .conftest import CHECKIN, EVENTS, World, signed_body

EVENT = {"event": "downloading", "report_id": "r-1"}


def test_wrong_bearers_are_limited_and_audited_once_per_window(world: World) -> None:
    d, _dev, client = world
    assert d.ctx is not None
    d.ctx.device_refusals.failures.limit = 5
    before = sum(1 for _ in d.ctx.identity.audit_entries())
    statuses = []
    for i in range(30):
        r = client.post(
            EVENTS,
            json=EVENT,
            headers={"Authorization": "Bearer wrong", "X-OTAGuard-Device": f"victim-{i}"},
        )
        statuses.append(r.status_code)
        assert r.json()["error"] in ("auth", "rate_limited")
    assert statuses == [401] * 5 + [429] * 25
    d.ctx.refusals.flush()
    rows = list(d.ctx.identity.audit_entries())[before:]
    assert len(rows) == 4  # first refusal, first 429, and one summary of each
    assert {e.actor for e in rows} == {"client:127.0.0.1"}
    assert not any(e.actor.startswith("device:") for e in rows)
    counts = {(e.action, e.detail["count"]) for e in rows}
    assert ("device.auth.refused", 5) in counts
    assert ("device.auth.rate_limited", 25) in counts
    assert rows[0].detail["claimed"] == "victim-0"


def test_a_limited_address_with_a_valid_credential_is_served(world: World) -> None:
    d, dev, client = world
    assert d.ctx is not None
    d.ctx.device_refusals.failures.limit = 2
    for _ in range(3):
        client.post(EVENTS, json=EVENT, headers={"Authorization": "Bearer wrong"})
    assert client.post(EVENTS, json=EVENT, headers={"Authorization": "Bearer x"}).status_code == 429
    assert client.post(EVENTS, json=EVENT).status_code == 201
    r = client.post(CHECKIN, json=signed_body(dev, "1.0.1"))
    assert r.status_code == 200, r.text
    bad = client.post(CHECKIN, json=signed_body(dev), headers={"Authorization": "Bearer x"})
    assert bad.status_code == 429


def test_tally_counts_per_kind_and_address_and_closes_windows() -> None:
    t = RefusalTally(window_seconds=10, max_keys=2)
    assert t.refused("k", "a", 0.0, {"n": 1}) == (True, [])
    assert t.refused("k", "a", 1.0, {"n": 2}) == (False, [])
    assert t.refused("k", "b", 2.0, {}) == (True, [])
    first, closed = t.refused("k", "a", 11.0, {"n": 3})  # a's window is over
    assert first
    assert [(c.client, c.count, c.sample) for c in closed] == [("a", 2, {"n": 1})]
    first, closed = t.refused("j", "c", 12.0, {})  # full: b (one refusal, already written) goes
    assert first
    assert closed == []
    assert [(c.kind, c.client, c.count) for c in t.close_all()] == []


def test_many_addresses_share_one_window_past_the_per_kind_limit() -> None:
    """An attacker rotating addresses (a botnet, an IPv6 prefix) gets at most
    ``addresses_per_kind`` immediate rows per kind and window, then one for all other
    addresses; without the limit (control) every address would write its own row."""
    t = RefusalTally(window_seconds=60, addresses_per_kind=3)
    rows = [t.refused("login", f"10.0.0.{i}", float(i), {"i": i})[0] for i in range(10)]
    assert rows == [True] * 3 + [True] + [False] * 6  # 3 own windows, then "*" once
    t.refused("other", "10.0.0.99", 10.0, {})  # another kind has its own budget
    summaries = {(s.kind, s.client): s.count for s in t.close_all()}
    assert summaries == {("login", OTHER_ADDRESSES): 7}
    control = RefusalTally(window_seconds=60, addresses_per_kind=10_000)
    assert all(control.refused("login", f"10.0.0.{i}", 0.0, {})[0] for i in range(10))
    # windows expire per address: the limit frees up again
    t.refused("login", "10.0.1.1", 100.0, {})
    assert t.refused("login", "10.0.1.2", 100.0, {})[0]
