"""A device's status history through the management API: the detail shows the most recent
events (not the first ones ever stored), and GET /api/v1/devices/{id}/events pages back
through all of it; the device list filters by the state each device last reported."""

from __future__ import annotations

from otaguard.demo import HARDWARE, Demo
from otaguard.fleet.status import DeviceState, UpdateEvent

EVENTS = 230


def test_detail_shows_latest_events_and_history_pages_back(demo_world: Demo) -> None:
    d = demo_world
    assert d.api is not None
    assert d.ctx is not None
    api = d.api.http
    api.post("/api/v1/devices", json={"id": "hist-1", "hardware": HARDWARE}).raise_for_status()
    api.post("/api/v1/devices", json={"id": "hist-2", "hardware": HARDWARE}).raise_for_status()
    for n in range(EVENTS):
        for device_id in ("hist-1", "hist-2"):
            d.ctx.store.record_event(
                device_id,
                event=UpdateEvent.FAILED,
                deployment_id=None,
                version="1.0.0",
                slot="a",
                detail={"error": f"attempt {n}"},
            )

    detail = api.get("/api/v1/devices/hist-1").json()
    shown = [e["detail"]["error"] for e in detail["events"]]
    assert shown == [f"attempt {n}" for n in range(EVENTS - 200, EVENTS)]

    pages: list[list[str]] = []
    params: dict[str, int] = {"limit": 100}
    while True:
        r = api.get("/api/v1/devices/hist-1/events", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert {e["device_id"] for e in page["items"]} == {"hist-1"}
        pages.append([e["detail"]["error"] for e in page["items"]])
        if page["next_before"] is None:
            break
        assert page["next_before"] == page["items"][0]["id"]
        params = {"limit": 100, "before": page["next_before"]}
    assert [len(p) for p in pages] == [100, 100, 30]
    history = [e for p in reversed(pages) for e in p]
    assert history == [f"attempt {n}" for n in range(EVENTS)]

    for bad in ({"limit": 0}, {"limit": 1001}, {"before": 0}, {"before": "x"}):
        r = api.get("/api/v1/devices/hist-1/events", params=bad)
        assert (r.status_code, r.json()["error"]) == (422, "validation"), (bad, r.text)
    r = api.get("/api/v1/devices/nobody/events")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    anonymous = api.build_request("GET", "/api/v1/devices/hist-1/events")
    del anonymous.headers["Authorization"]
    assert api.send(anonymous).status_code == 401


def test_devices_filter_by_last_reported_state(demo_world: Demo) -> None:
    d = demo_world
    assert d.api is not None
    assert d.ctx is not None
    api = d.api.http
    for device_id in ("st-1", "st-2", "st-3"):
        api.post("/api/v1/devices", json={"id": device_id, "hardware": HARDWARE}).raise_for_status()
    for device_id, event in (("st-1", UpdateEvent.ROLLED_BACK), ("st-2", UpdateEvent.COMMITTED)):
        d.ctx.store.record_event(
            device_id, event=event, deployment_id=None, version="1.0.0", slot="a", detail={}
        )

    def ids(**params: str) -> list[str]:
        r = api.get("/api/v1/devices", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert ids(state="rolled_back") == ["st-1"]
    assert ids(state="committed", hardware=HARDWARE) == ["st-2"]
    assert ids(state="idle") == ["st-3"]
    assert ids(state="failed") == []
    r = api.get("/api/v1/devices", params={"state": "exploded"})
    assert (r.status_code, r.json()["error"]) == (422, "validation")


def test_update_states_in_the_api_are_the_reported_events() -> None:
    assert {s.value for s in DeviceState} == {"idle"} | {e.value for e in UpdateEvent}
