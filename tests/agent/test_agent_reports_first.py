"""A device whose outcome report did not reach the server does not check in (and so cannot be
offered the same deployment again) until the report is delivered."""

from __future__ import annotations

import httpx

from otaguard.demo import Demo


def test_no_check_in_while_the_commit_report_is_undelivered(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0")
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    d.deploy(v2_name)
    assert dev.run_once().reboot
    agent = dev.agent
    assert agent is not None
    # The link drops for the reports: the commit after the reboot cannot be delivered.
    real_post = httpx.Client.post
    seen: list[str] = []

    def post(self: httpx.Client, url: str, *a: object, **kw: object) -> httpx.Response:
        seen.append(str(url))
        if str(url).endswith("/device/v1/events"):
            raise httpx.ConnectError("link down")
        return real_post(self, url, *a, **kw)  # type: ignore[arg-type]

    httpx.Client.post = post  # type: ignore[method-assign]
    try:
        dev.reboot()
        assert dev.version == "2.0.0"
        assert dev.agent is not None
        assert dev.agent.journal.outbox
        seen.clear()
        out = dev.run_once()
        assert out.action == "retry"
        assert not any(u.endswith("/device/v1/checkin") for u in seen)
    finally:
        httpx.Client.post = real_post  # type: ignore[method-assign]
    # Link back: the reports go first, then the check-in finds nothing more to do.
    out = dev.run_once()
    assert out.action == "idle"
    assert dev.agent.journal.outbox == []
    assert d.api is not None
    events = [e["event"] for e in d.api.device(dev.config.device_id)["events"]]
    assert events[-1] == "committed"
    assert events.count("downloading") == 1
