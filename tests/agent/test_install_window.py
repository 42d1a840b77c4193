"""The agent's maintenance-window gate (``agent/install_window.py``): open exactly when a window
is, closed with the next opening otherwise (scanned minute by minute over weeks that include
daylight-saving changes), and a config whose windows do not parse is refused naming the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from otaguard.agent.config import AgentConfig
from otaguard.agent.config_values import check_values
from otaguard.agent.install_window import install_gate, parse_windows
from otaguard.errors import ConfigError
from otaguard.fleet.windows import may_install

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def test_no_windows_means_any_time() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert install_gate(None, now).open
    assert parse_windows("maintenance_windows", []) is None


def test_inside_and_outside_one_window() -> None:
    schedule = parse_windows("maintenance_windows", ["Mon-Fri 02:00-04:00 Europe/Berlin"])
    tuesday_3am = dt.datetime(2026, 12, 1, 3, 0, tzinfo=BERLIN)
    assert install_gate(schedule, tuesday_3am).open
    noon = dt.datetime(2026, 12, 1, 12, 0, tzinfo=BERLIN)
    gate = install_gate(schedule, noon)
    assert not gate.open
    assert gate.opens_at == dt.datetime(2026, 12, 2, 2, 0, tzinfo=BERLIN)
    assert gate.reason.startswith("maintenance window closed (Mon-Fri 02:00-04:00 Europe/Berlin)")
    assert "2026-12-02T01:00+00:00" in gate.reason
    friday_5am = dt.datetime(2026, 12, 4, 5, 0, tzinfo=BERLIN)
    assert install_gate(schedule, friday_5am).opens_at == dt.datetime(
        2026, 12, 7, 2, 0, tzinfo=BERLIN
    )  # Monday: the weekend has no window


@pytest.mark.parametrize(
    ("windows", "start"),
    [
        (["Mon-Fri 02:00-04:00 Europe/Berlin"], dt.datetime(2026, 3, 23, tzinfo=UTC)),  # DST on
        (["Sat,Sun 22:00-02:00 Europe/Berlin"], dt.datetime(2026, 10, 19, tzinfo=UTC)),  # off
        (["daily 01:30-01:45 UTC+05:30", "Wed 12:00-13:00"], dt.datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_the_gate_agrees_with_the_windows_minute_by_minute(
    windows: list[str], start: dt.datetime
) -> None:
    """Over two weeks, every 5 minutes: open exactly when a window is; when closed, the opening
    named is open, lies ahead, and nothing between now and it is open (checked each minute
    for the next 3 hours after every 12th sample)."""
    schedule = parse_windows("maintenance_windows", windows)
    assert schedule is not None
    step = dt.timedelta(minutes=5)
    now = start
    for i in range(14 * 24 * 12):
        gate = install_gate(schedule, now)
        assert gate.open is may_install(schedule, now)
        if not gate.open:
            assert gate.opens_at is not None
            assert gate.opens_at > now
            assert install_gate(schedule, gate.opens_at).open
            if i % 12 == 0:
                probe = now
                while probe < min(gate.opens_at, now + dt.timedelta(hours=3)):
                    assert not may_install(schedule, probe), (now, probe)
                    probe += dt.timedelta(minutes=1)
        now += step


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["Mon-Fri 25:00-04:00"], "maintenance_windows: invalid maintenance window"),
        (["Funday 02:00-04:00"], "unknown day 'funday'"),
        (["02:00-04:00 Mars/Olympus"], "unknown time zone"),
        ([""], "non-empty string"),
        ([3], "non-empty string"),
        (42, "expected a list of windows"),
    ],
)
def test_bad_windows_are_refused_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match="maintenance_windows") as info:
        parse_windows("maintenance_windows", value)
    assert message in str(info.value)


def test_the_config_file_is_checked_at_start(tmp_path: Path) -> None:
    base = {
        "device_id": "d1",
        "hardware": "sim-board",
        "server_url": "https://127.0.0.1:1",
        "state_dir": tmp_path,
        "director_key_file": tmp_path / "k",
        "trusted_root_file": tmp_path / "r",
        "credential_file": tmp_path / "c",
    }
    one = check_values({**base, "maintenance_windows": "Sat 01:00-05:00 UTC"})
    assert one["maintenance_windows"] == ["Sat 01:00-05:00 UTC"]
    config = AgentConfig(**one)
    assert config.schedule is not None
    assert config.schedule.spec == "Sat 01:00-05:00 UTC"
    with pytest.raises(ConfigError, match="maintenance_windows: invalid"):
        check_values({**base, "maintenance_windows": ["Sat 01:00-05:00 UTC", "Sun 9-5"]})
    with pytest.raises(ConfigError, match="maintenance_windows"):
        AgentConfig(**base, maintenance_windows=["whenever"])  # built in code (the simulator)
    toml = tmp_path / "agent.toml"
    toml.write_text(
        "[agent]\n"
        + "".join(f'{k} = "{v}"\n' for k, v in base.items())
        + 'maintenance_windows = ["Mon-Fri 02:00-04:00 Europe/Atlantis"]\n'
    )
    with pytest.raises(ConfigError, match=r"agent\.toml: maintenance_windows: .*Atlantis"):
        AgentConfig.from_toml(toml)
