"""The management CLI's pure parts: which server and token a command uses, what a refusal
says, how values print, how a watch polls and ends. No server, no files (but one: the
credentials file's mode)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from otaguard.cli.manage import credentials as cred
from otaguard.cli.manage.deployments import selector_of
from otaguard.cli.manage.devices import new_tags
from otaguard.cli.manage.dynamic_groups import filter_of, parse_where
from otaguard.cli.manage.messages import explain
from otaguard.cli.manage.output import age, cell, rows
from otaguard.cli.manage.progress import (
    MAX_DELAY,
    DeploymentProgress,
    next_delay,
    outcome,
    progress_of,
)
from otaguard.cli.manage.watch import WatchTimeout, follow
from otaguard.errors import ConfigError

CONFIG: dict[str, Any] = {
    "current": "prod",
    "contexts": {
        "prod": {"server": "https://prod:8443", "ca": "/etc/ca.pem", "token": "tok-prod"},
        "lab": {"server": "https://lab:8443"},  # logged out
    },
}


# -- credentials: which server and token -------------------------------------------------------
def test_the_current_context_is_used_by_default() -> None:
    t = cred.resolve(CONFIG, {})
    assert (t.context, t.server, t.ca, t.token) == (
        "prod",
        "https://prod:8443",
        Path("/etc/ca.pem"),
        "tok-prod",
    )


def test_context_option_then_env_then_current() -> None:
    with pytest.raises(ConfigError, match="not logged in to 'lab'"):
        cred.resolve(CONFIG, {}, context="lab")
    with pytest.raises(ConfigError, match="not logged in to 'lab'"):
        cred.resolve(CONFIG, {cred.CONTEXT_ENV: "lab"})
    assert cred.resolve(CONFIG, {cred.CONTEXT_ENV: "lab"}, context="prod").context == "prod"


def test_token_from_the_environment_wins_and_needs_no_file() -> None:
    env = {cred.TOKEN_ENV: "tok-env", cred.SERVER_ENV: "https://x:1", cred.CA_ENV: "/ca"}
    t = cred.resolve({}, env)
    assert (t.context, t.server, t.ca, t.token) == (None, "https://x:1", Path("/ca"), "tok-env")
    # with a context's server: the env token is used against it
    t = cred.resolve(CONFIG, {cred.TOKEN_ENV: "tok-env"}, context="lab")
    assert (t.server, t.token) == ("https://lab:8443", "tok-env")


def test_nothing_to_go_on_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not logged in: run `otaguard login"):
        cred.resolve({}, {})
    with pytest.raises(ConfigError, match="no context 'nope' \\(known: lab, prod\\)"):
        cred.resolve(CONFIG, {}, context="nope")


def test_an_expired_login_says_so_before_asking_the_server() -> None:
    soon = {**CONFIG["contexts"]["prod"], "expires_at": "2026-01-02T12:00:00+00:00"}
    config = {"current": "prod", "contexts": {"prod": soon}}
    before = dt.datetime(2026, 1, 2, 11, 59, tzinfo=dt.UTC)
    after = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    assert cred.resolve(config, {}, now=before).token == "tok-prod"
    with pytest.raises(ConfigError, match="login to 'prod' expired at 2026-01-02T12:00:00"):
        cred.resolve(config, {}, now=after)
    # a token from the environment is the server's to judge
    assert cred.resolve(config, {cred.TOKEN_ENV: "t"}, now=after).token == "t"


def test_the_token_is_not_in_the_targets_repr() -> None:
    assert "tok-prod" not in repr(cred.resolve(CONFIG, {}))


def test_login_and_logout_edit_one_context() -> None:
    after = cred.with_login(CONFIG, "lab", "https://lab:8443", None, token="t2", user=None)
    assert after["current"] == "lab"
    assert after["contexts"]["lab"] == {"server": "https://lab:8443", "token": "t2"}
    assert after["contexts"]["prod"] == CONFIG["contexts"]["prod"]
    out = cred.without_token(after, "prod")
    assert out["contexts"]["prod"] == {"server": "https://prod:8443", "ca": "/etc/ca.pem"}
    assert out["contexts"]["lab"]["token"] == "t2"
    with pytest.raises(ConfigError):
        cred.without_token(CONFIG, "nope")


def test_context_names_and_paths() -> None:
    assert cred.default_context_name("https://ota.example:8443/") == "ota.example:8443"
    for bad in ("ota.example", "http://ota.example:8443", "https://"):
        with pytest.raises(ConfigError, match="must be an https:// URL"):
            cred.default_context_name(bad)
    with pytest.raises(ConfigError, match="must be an https:// URL"):  # not even from the env
        cred.resolve({}, {cred.TOKEN_ENV: "t", cred.SERVER_ENV: "http://x:80"})
    assert cred.config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/otaguard/credentials.toml")
    assert cred.config_path({"HOME": "/h"}) == Path("/h/.config/otaguard/credentials.toml")
    assert cred.config_path({cred.CONFIG_ENV: "/c.toml", "HOME": "/h"}) == Path("/c.toml")


def test_the_file_is_written_0600_and_refused_when_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "otaguard" / "credentials.toml"
    cred.save(path, CONFIG)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert cred.load(path) == CONFIG
    path.chmod(0o644)  # control: a loose file is refused, not read
    with pytest.raises(ConfigError, match="chmod 600"):
        cred.load(path)
    assert cred.load(tmp_path / "none.toml") == {}
    bad = tmp_path / "bad.toml"
    bad.write_text("current = [")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="not valid TOML"):
        cred.load(bad)


# -- what a refusal says ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (
            403,
            "deployment.create is not allowed for viewer",
            "forbidden: your role viewer may not do deployment.create",
        ),
        (
            403,
            "user.manage is not allowed for approver, deployer",
            "forbidden: your roles approver, deployer may not do user.manage",
        ),
        (
            403,
            "deployment.approve is not allowed for no role",
            "forbidden: with no role you may not do deployment.approve",
        ),
        (
            403,
            "this API token is not scoped for device.read",
            "forbidden: your API token is not scoped for device.read",
        ),
        (
            403,
            "the creator of a deployment cannot approve it",
            "forbidden: the creator of a deployment cannot approve it",
        ),
        (404, "no device x", "not found: no device x"),
        (409, "deployment 3 is active", "conflict: deployment 3 is active"),
        (422, "name: bad", "refused: name: bad"),
        (400, "passwords need 12", "refused: passwords need 12"),
        (500, "boom", "server error (HTTP 500): boom"),
    ],
)
def test_refusals_in_the_operators_terms(status: int, detail: str, expected: str) -> None:
    assert explain(status, detail) == expected


def test_unauthenticated_says_to_log_in_again() -> None:
    msg = explain(401, "unknown, expired or\n revoked API token", context="prod")
    assert msg == (
        "not logged in or token expired (unknown, expired or revoked API token): "
        "run `otaguard login --context prod`"
    )


# -- output -------------------------------------------------------------------------------------
def test_cells() -> None:
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    assert cell(None) == cell("") == cell([]) == "-"
    assert (cell(True), cell(False), cell(3)) == ("yes", "no", "3")
    assert cell(["a", "b"]) == "a, b"
    assert cell({"succeeded": 2, "failed": 1}) == "succeeded=2, failed=1"
    assert cell("2026-01-02T11:58:00+00:00", now=now) == "2026-01-02 11:58:00 (2m ago)"
    assert cell("2026-01-02T11:58:00", now=now) == "2026-01-02 11:58:00 (2m ago)"  # naive: UTC
    assert cell("2026-01-02Tnonsense") == "2026-01-02Tnonsense"
    assert cell("sim-board/firmware-1.0.0.img") == "sim-board/firmware-1.0.0.img"


def test_age() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert age(now - dt.timedelta(seconds=5), now) == "5s ago"
    assert age(now - dt.timedelta(hours=3, minutes=5), now) == "3h ago"
    assert age(now - dt.timedelta(days=2), now) == "2d ago"
    assert age(now + dt.timedelta(minutes=10), now) == "in 10m"


def test_rows_reach_into_nested_fields() -> None:
    items: list[dict[str, Any]] = [{"id": 1, "custom": {"notes": "n"}}, {"id": 2}]
    assert rows(items, [("id", "id"), ("notes", "custom.notes")]) == [["1", "n"], ["2", "-"]]


# -- arguments ----------------------------------------------------------------------------------
def test_tag_changes() -> None:
    assert new_tags(["a", "b"], add=["c", "a"], remove=["b"], clear=False) == ["a", "c"]
    assert new_tags(["a", "b"], add=["x"], remove=[], clear=True) == ["x"]
    assert new_tags(["a"], add=[], remove=["a"], clear=False) == []


def test_exactly_one_selector() -> None:
    assert selector_of(all_devices=True, tag=None, hardware=None, devices=[]) == {"all": True}
    assert selector_of(all_devices=False, tag="eu", hardware=None, devices=[]) == {"tag": "eu"}
    assert selector_of(all_devices=False, tag=None, hardware=None, devices=["a", "b"]) == {
        "devices": ["a", "b"]
    }
    with pytest.raises(ValueError, match="one way"):
        selector_of(all_devices=False, tag=None, hardware=None, devices=[])
    with pytest.raises(ValueError, match="one way"):
        selector_of(all_devices=True, tag="eu", hardware=None, devices=[])
    assert selector_of(all_devices=False, tag=None, hardware=None, devices=[], group="g") == {
        "group": "g"
    }
    with pytest.raises(ValueError, match="--group"):
        selector_of(all_devices=False, tag="eu", hardware=None, devices=[], group="g")


# -- dynamic group conditions -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("version<2.0", ("version", "lt", "2.0")),
        ("version <= 2.0", ("version", "le", "2.0")),
        ("agent_version>=0.1", ("agent_version", "ge", "0.1")),
        ("security_version > 2", ("security_version", "gt", 2)),
        ("hardware=sim-board", ("hardware", "eq", "sim-board")),
        ("hardware != sim-board", ("hardware", "ne", "sim-board")),
        ("hardware^=sim-", ("hardware", "prefix", "sim-")),
        ("tag has eu", ("tag", "has", "eu")),
        ("tag has-any eu, us", ("tag", "has_any", ["eu", "us"])),
        ("tag has-all eu,lab", ("tag", "has_all", ["eu", "lab"])),
        ("tag has-none lab", ("tag", "has_none", ["lab"])),
        ("update_state in failed,rolled_back", ("update_state", "in", ["failed", "rolled_back"])),
        ("security_version not-in 1,2", ("security_version", "not_in", [1, 2])),
        ("slot exists", ("slot", "exists", True)),
        ("version missing", ("version", "exists", False)),
    ],
)
def test_where_conditions(text: str, condition: tuple[str, str, object]) -> None:
    attribute, op, value = condition
    assert parse_where(text) == {"attribute": attribute, "op": op, "value": value}


@pytest.mark.parametrize("text", ["version", "version ~ 2", "security_version=two", ""])
def test_where_conditions_that_do_not_parse(text: str) -> None:
    with pytest.raises(ValueError):
        parse_where(text)


def test_filter_from_where_or_a_file(tmp_path: Path) -> None:
    assert filter_of(["slot exists"], True, None) == {
        "match": "any",
        "conditions": [{"attribute": "slot", "op": "exists", "value": True}],
    }
    path = tmp_path / "f.json"
    path.write_text('{"conditions": []}')
    assert filter_of([], False, path) == {"conditions": []}  # the server judges it
    with pytest.raises(ValueError, match="one way"):
        filter_of(["slot exists"], False, path)
    with pytest.raises(ValueError, match="one way"):
        filter_of([], False, None)


# -- watching -----------------------------------------------------------------------------------
def dep(state: str, **counts: int) -> dict[str, object]:
    return {"state": state, "counts": counts, "total": sum(counts.values())}


def test_progress_and_outcome() -> None:
    p = progress_of(dep("active", succeeded=2, failed=1, pending=3))
    assert (p.done, p.total, p.finished) == (3, 6, False)
    assert p.summary() == "active: 2 succeeded, 1 failed, 0 cancelled, 3 to go"
    assert outcome(progress_of(dep("completed", succeeded=4))) == 0
    assert outcome(progress_of(dep("completed", succeeded=3, failed=1))) == 1
    assert outcome(progress_of(dep("cancelled", succeeded=1, cancelled=3))) == 1


def test_polls_slow_down_while_nothing_changes_and_stay_bounded() -> None:
    d = 2.0
    seen = []
    for _ in range(20):
        d = next_delay(d, changed=False, base=2.0)
        seen.append(d)
    assert seen[0] == 3.0
    assert seen == sorted(seen)
    assert max(seen) == MAX_DELAY
    assert next_delay(MAX_DELAY, changed=True, base=2.0) == 2.0
    assert next_delay(0.0, changed=True, base=0.01) == 1.0  # never faster than once a second


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_follow_reports_each_change_once_until_finished() -> None:
    replies = iter(
        [
            dep("active", pending=2),
            dep("active", pending=2),
            dep("active", pending=1, succeeded=1),
            dep("completed", succeeded=2),
        ]
    )
    heard: list[DeploymentProgress] = []
    t = FakeTime()
    final = follow(
        lambda: next(replies),
        lambda _r, p: heard.append(p),
        interval=2.0,
        timeout=None,
        sleep=t.sleep,
        clock=lambda: t.now,
    )
    assert final.state == "completed"
    assert [p.done for p in heard] == [0, 1, 2]
    assert t.sleeps == [2.0, 3.0, 2.0]  # backed off once while nothing changed


def test_follow_gives_up_at_the_timeout() -> None:
    t = FakeTime()
    with pytest.raises(WatchTimeout, match="awaiting_approval"):
        follow(
            lambda: dep("awaiting_approval", pending=1),
            lambda _r, _p: None,
            interval=2.0,
            timeout=10.0,
            sleep=t.sleep,
            clock=lambda: t.now,
        )
    assert t.now == 10.0
    assert len(t.sleeps) < 10


def phased(state: str, status: str, phase: int, *phases: dict[str, int]) -> dict[str, object]:
    counts: dict[str, int] = {}
    for p in phases:
        for k, v in p.items():
            counts[k] = counts.get(k, 0) + v
    reply = dep(state, **counts)
    reply["rollout"] = {
        "status": status,
        "phase": phase,
        "phases": [
            {"name": f"p{i}", "released": i <= phase, "counts": c} for i, c in enumerate(phases)
        ],
    }
    return reply


def test_phased_progress_has_a_bar_per_phase() -> None:
    p = progress_of(
        phased("active", "running", 1, {"succeeded": 2}, {"succeeded": 1, "rolled_back": 1,
               "pending": 4}, {"pending": 10})
    )  # fmt: skip
    assert [(x.name, x.total, x.ended, x.bad, x.label) for x in p.phases] == [
        ("p0", 2, 2, 0, "done"),
        ("p1", 6, 2, 1, "current"),
        ("p2", 10, 0, 0, "waiting"),
    ]
    assert (
        p.summary()
        == "active (rollout running, phase p1): 3 succeeded, 0 failed, 0 cancelled, 15 to go"
    )
    assert progress_of(dep("active", pending=1)).phases == ()  # unphased: no phase bars
    # an aborted rollout is over (the watcher stops) and not a success
    aborted = progress_of(phased("aborted", "aborted", 0, {"succeeded": 1, "pending": 1}))
    assert aborted.finished
    assert outcome(aborted) == 1


def test_follow_hears_a_phase_moving_even_when_the_totals_do_not() -> None:
    replies = iter(
        [
            phased("active", "running", 0, {"succeeded": 1}, {"pending": 1}),
            phased("active", "paused", 0, {"succeeded": 1}, {"pending": 1}),
            phased("active", "running", 1, {"succeeded": 1}, {"pending": 1}),
            phased("completed", "completed", 1, {"succeeded": 1}, {"succeeded": 1}),
        ]
    )
    heard: list[DeploymentProgress] = []
    t = FakeTime()
    follow(lambda: next(replies), lambda _r, p: heard.append(p), interval=1.0, timeout=None,
           sleep=t.sleep, clock=lambda: t.now)  # fmt: skip
    assert [(p.rollout_status, [x.label for x in p.phases]) for p in heard] == [
        ("running", ["done", "waiting"]),
        ("paused", ["done", "waiting"]),
        ("running", ["done", "current"]),
        ("completed", ["done", "done"]),
    ]
