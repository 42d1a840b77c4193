"""The console's pure rules, without HTTP: contact buckets, fleet facets, chart geometry,
paging, times, which deployment buttons an operator gets, the progress cache, CSRF values."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from otaguard.errors import CompatibilityError
from otaguard.identity.rbac import Principal, Role
from otaguard.server.console import charts, timefmt
from otaguard.server.console.actions import deployment_actions
from otaguard.server.console.deployment_routes import selector_of
from otaguard.server.console.fleet import Contact, ContactCuts, GroupRow, summarize, top
from otaguard.server.console.paging import Paging
from otaguard.server.console.progress_cache import TtlCache
from otaguard.server.console.session import csrf_ok, csrf_token

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def person(*roles: Role, name: str = "p") -> Principal:
    return Principal(name, frozenset(roles), frozenset({"*"}))


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (None, Contact.SILENT),
        (NOW, Contact.ONLINE),
        (NOW - dt.timedelta(seconds=180), Contact.ONLINE),  # three polls of 60 s
        (NOW - dt.timedelta(seconds=181), Contact.STALE),
        (NOW - dt.timedelta(days=1), Contact.STALE),
        (NOW - dt.timedelta(days=1, seconds=1), Contact.SILENT),
    ],
)
def test_contact_buckets_follow_the_poll_interval(
    seen: dt.datetime | None, expected: Contact
) -> None:
    assert ContactCuts.at(NOW, 60).contact(seen) is expected


def test_summary_folds_grouped_rows_into_facets() -> None:
    rows = [
        GroupRow("2.0.0", "a", "committed", "online", 7),
        GroupRow("1.0.0", "a", "rolled_back", "stale", 2),
        GroupRow(None, "b", "idle", "silent", 1),
    ]
    s = summarize(rows)
    assert s.total == 10
    assert s.by_version == [("2.0.0", 7), ("1.0.0", 2), ("unknown", 1)]
    assert s.by_hardware == [("a", 9), ("b", 1)]
    assert s.by_contact == [("online", 7), ("stale", 2), ("silent", 1)]
    empty = summarize([])
    assert empty.total == 0
    assert empty.by_contact == [("online", 0), ("stale", 0), ("silent", 0)]


def test_a_facet_keeps_the_largest_values_and_sums_the_rest() -> None:
    counts = Counter({f"v{i}": i for i in range(1, 12)})
    shown = top(counts, limit=3)
    assert shown[:3] == [("v11", 11), ("v10", 10), ("v9", 9)]
    assert shown[3] == ("8 others", sum(range(1, 9)))
    assert sum(n for _, n in shown) == sum(counts.values())


def test_bars_scale_to_the_largest_and_show_shares() -> None:
    bars = charts.bars([("x", 30), ("y", 10), ("z", 0)])
    assert [b.width for b in bars] == [charts.BAR_WIDTH, charts.BAR_WIDTH / 3, 0.0]
    assert [b.percent for b in bars] == [75, 25, 0]
    assert charts.bars([("x", 0)])[0].width == 0.0


def test_stacked_progress_fills_the_bar_in_a_fixed_order() -> None:
    segs = charts.stacked({"pending": 1, "succeeded": 2, "failed": 1})
    assert [s.status for s in segs] == list(charts.PROGRESS_ORDER)
    assert [s.count for s in segs] == [2, 1, 0, 1, 0]
    assert segs[1].x == segs[0].width
    assert sum(s.width for s in segs) == pytest.approx(charts.BAR_WIDTH)
    assert all(s.width == 0 for s in charts.stacked({}))


def test_paging() -> None:
    p = Paging(2, 50).of(120)
    assert (p.first_item, p.last_item, p.previous, p.next, p.last) == (51, 100, 1, 3, 3)
    last = Paging(3, 50).of(120)
    assert (last.first_item, last.last_item, last.next) == (101, 120, None)
    none = Paging(1, 50).of(0)
    assert (none.first_item, none.last, none.previous, none.next) == (0, 1, None, None)


def test_times_are_relative_and_absolute() -> None:
    assert timefmt.relative(NOW - dt.timedelta(seconds=2), NOW) == "just now"
    assert timefmt.relative(NOW - dt.timedelta(seconds=42), NOW) == "42 s ago"
    assert timefmt.relative(NOW - dt.timedelta(minutes=5, seconds=9), NOW) == "5 min ago"
    assert timefmt.relative(NOW - dt.timedelta(days=3, hours=2), NOW) == "3 d ago"
    assert timefmt.relative(NOW + dt.timedelta(days=89), NOW) == "in 89 d"
    assert timefmt.relative(None, NOW) == "never"
    naive = dt.datetime(2026, 12, 1, 11, 0)  # stored without a zone: UTC
    assert timefmt.relative(naive, NOW) == "1 h ago"
    assert timefmt.absolute(naive) == "2026-12-01 11:00:00 UTC"


def test_buttons_follow_roles_state_and_the_two_person_rule() -> None:
    waiting = "awaiting_approval"
    assert deployment_actions(waiting, "dora", person(Role.VIEWER)) == []
    approver = deployment_actions(waiting, "dora", person(Role.APPROVER, name="abel"))
    assert [(a.name, a.enabled) for a in approver] == [("approve", True)]
    creator = deployment_actions(waiting, "dora", person(Role.APPROVER, Role.DEPLOYER, name="dora"))
    assert [(a.name, a.enabled) for a in creator] == [("approve", False), ("cancel", True)]
    assert "two-person" in creator[0].note
    assert [a.name for a in deployment_actions("active", "x", person(Role.DEPLOYER))] == ["cancel"]
    assert deployment_actions("completed", "x", person(Role.ADMIN)) == []
    assert deployment_actions("active", "x", person(Role.APPROVER)) == []


def test_progress_is_read_at_most_once_per_ttl_per_deployment() -> None:
    cache: TtlCache[int] = TtlCache(ttl=1.0, max_entries=2)
    reads = iter(range(100))
    assert [cache.get(7, t, lambda: next(reads)) for t in (0.0, 0.3, 0.99)] == [0, 0, 0]
    assert cache.get(7, 1.0, lambda: next(reads)) == 1
    assert cache.loads == 2
    cache.get(8, 1.0, lambda: next(reads))
    cache.get(9, 1.0, lambda: next(reads))
    assert cache.get(7, 1.1, lambda: next(reads)) == 4  # evicted: bounded memory too


def test_form_selector_is_the_apis_selector() -> None:
    assert selector_of("all", "").all is True
    assert selector_of("tag", " canary ").tag == "canary"
    assert selector_of("devices", "a-1, a-2 a-3").devices == ["a-1", "a-2", "a-3"]
    with pytest.raises(CompatibilityError):
        selector_of("tag", "")
    with pytest.raises(CompatibilityError):
        selector_of("everything", "x")


def test_csrf_value_is_bound_to_its_session() -> None:
    a, b = "otg_session-a", "otg_session-b"
    assert csrf_ok(a, csrf_token(a))
    assert not csrf_ok(a, csrf_token(b))
    assert not csrf_ok(a, "")
    assert not csrf_ok(a, None)
    assert a not in csrf_token(a)
