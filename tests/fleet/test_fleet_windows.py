"""Per-device maintenance windows in local time (fleet/windows.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.errors import MaintenanceWindowError
from otaguard.fleet.windows import may_install, next_opening, parse_schedule


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# 2026-12-01 is a Tuesday; Berlin is UTC+1 in winter, UTC+2 in summer.


def test_weekday_window_in_berlin_winter() -> None:
    s = parse_schedule("Mon-Fri 01:00-05:00 Europe/Berlin")
    assert may_install(s, utc(2026, 12, 1, 0, 0))  # 01:00 Berlin, Tuesday
    assert may_install(s, utc(2026, 12, 1, 3, 59))  # 04:59 Berlin
    assert not may_install(s, utc(2026, 12, 1, 4, 0))  # 05:00 Berlin: end is exclusive
    assert not may_install(s, utc(2026, 11, 30, 23, 59))  # 00:59 Berlin
    assert not may_install(s, utc(2026, 12, 5, 1, 0))  # Saturday 02:00 Berlin


def test_daylight_saving_time_is_followed() -> None:
    s = parse_schedule("daily 01:00-02:00 Europe/Berlin")
    assert may_install(s, utc(2026, 7, 1, 23, 30))  # 01:30 CEST
    assert not may_install(s, utc(2026, 7, 1, 0, 30))  # 02:30 CEST
    assert may_install(s, utc(2026, 1, 15, 0, 30))  # 01:30 CET


def test_fixed_offsets() -> None:
    for spec in ("02:00-03:00 UTC+05:30", "02:00-03:00 +0530", "02:00-03:00 utc+5:30"):
        s = parse_schedule(spec)
        assert may_install(s, utc(2026, 12, 1, 20, 45)), spec  # 02:15 next day at +05:30
        assert not may_install(s, utc(2026, 12, 1, 21, 45)), spec
    s = parse_schedule("22:00-23:00 UTC-5")
    assert may_install(s, utc(2026, 12, 2, 3, 30))
    assert may_install(parse_schedule("10:00-11:00"), utc(2026, 12, 1, 10, 30))  # UTC default
    assert may_install(parse_schedule("10:00-11:00 Z"), utc(2026, 12, 1, 10, 30))


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    s = parse_schedule("Fri 22:00-02:00")
    friday_late = utc(2026, 12, 4, 23)
    saturday_early = utc(2026, 12, 5, 1, 59)
    thursday_late = utc(2026, 12, 3, 23)
    friday_early = utc(2026, 12, 4, 1)
    assert may_install(s, friday_late)
    assert may_install(s, saturday_early)
    assert not may_install(s, utc(2026, 12, 5, 2, 0))
    assert not may_install(s, thursday_late)
    assert not may_install(s, friday_early)


def test_day_lists_ranges_wrapping_and_several_windows() -> None:
    s = parse_schedule("Sat,sunday 00:00-24:00; Fri-Mon 12:00-13:00")
    assert may_install(s, utc(2026, 12, 5, 9))  # Saturday all day
    assert may_install(s, utc(2026, 12, 7, 12, 30))  # Monday noon (wrapping range)
    assert not may_install(s, utc(2026, 12, 8, 12, 30))  # Tuesday noon
    assert not may_install(s, utc(2026, 12, 7, 9))  # Monday morning


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "must not be empty"),
        ("Mon-Fri", "one START-END"),
        ("Funday 01:00-02:00", "unknown day"),
        ("Mo 01:00-02:00", "unknown day"),
        ("25:00-02:00", "out of range"),
        ("01:00-24:30", "out of range"),
        ("01:60-02:00", "out of range"),
        ("01:00-01:00", "empty window"),
        ("01:00-02:00 Mars/Olympus", "unknown time zone"),
        ("01:00-02:00 UTC+15", "offset out of range"),
        ("Mon 01:00-02:00 UTC extra", "expected [DAYS]"),
        ("a b 01:00-02:00", "expected [DAYS]"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(MaintenanceWindowError, match=message.replace("[", r"\[")):
        parse_schedule(spec)


def test_every_bad_part_is_listed() -> None:
    with pytest.raises(MaintenanceWindowError) as info:
        parse_schedule("Xyz 01:00-02:00; 01:00-02:00; 03:00-03:00")
    assert len(info.value.problems) == 2
    assert info.value.code == "maintenance_window"


def test_naive_time_is_refused() -> None:
    s = parse_schedule("01:00-02:00")
    with pytest.raises(MaintenanceWindowError, match="time zone"):
        may_install(s, datetime(2026, 12, 1, 1, 30))


def test_next_opening() -> None:
    s = parse_schedule("Mon-Fri 01:00-05:00 Europe/Berlin")
    open_now = utc(2026, 12, 1, 1)
    assert next_opening(s, open_now) == open_now
    # Friday 06:00 Berlin -> Monday 01:00 Berlin
    assert next_opening(s, utc(2026, 12, 4, 5)) == utc(2026, 12, 7, 0)
    # across the spring DST change: Monday 2027-03-29 01:00 CEST is 23:00 UTC Sunday
    assert next_opening(s, utc(2027, 3, 27, 12)) == utc(2027, 3, 28, 23)


@given(
    st.sampled_from(
        [
            "Mon-Fri 01:00-05:00 Europe/Berlin",
            "Sat 22:00-02:00 America/New_York",
            "Tue,Thu 00:00-00:30 UTC+09:00",
            "daily 23:59-00:01 Asia/Kolkata",
        ]
    ),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
)
def test_next_opening_is_open_and_nothing_opens_before_it(spec: str, naive: datetime) -> None:
    s = parse_schedule(spec)
    now = naive.replace(tzinfo=UTC)
    opening = next_opening(s, now)
    assert opening >= now
    assert opening - now <= timedelta(days=7)
    assert may_install(s, opening)
    # minutes before it (in whole-minute steps from now) are closed
    probe = now
    while probe + timedelta(minutes=1) <= opening and probe < now + timedelta(hours=3):
        assert not may_install(s, probe)
        probe += timedelta(minutes=17)
