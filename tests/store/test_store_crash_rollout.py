"""SIGKILL the server in the middle of a rollout, restart it on the same data directory and
port, and let the fleet finish: no status report is lost or stored twice, and the deployment
agrees with every device."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .fleet_world import (
    ServerProcess,
    assert_deployment_consistent,
    assert_reports_stored_exactly,
    build_world,
    free_port,
    settle,
)

DEVICES = 8
REPORTS_PER_UPDATE = 7  # downloading .. committed


def test_sigkill_mid_rollout_loses_no_report(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server", free_port())
    server.start()
    admin = server.admin()
    world = build_world(tmp_path / "world", admin, [server.url], server.ca, DEVICES)
    try:
        dep_id = int(admin.create_deployment("crash", world.v2_name, {"all": True})["id"])
        expected = DEVICES * REPORTS_PER_UPDATE
        killed = threading.Event()
        restarted = threading.Event()
        at_kill: dict[str, int] = {}

        def acked() -> int:
            return sum(len(w.acked) for w in world.wires.values())

        def pause() -> None:
            time.sleep(0.01 if restarted.is_set() or not killed.is_set() else 0.05)

        def chaos() -> None:
            while acked() < expected // 3:
                time.sleep(0.005)
            server.kill()
            at_kill["acked"] = acked()
            killed.set()
            time.sleep(1.0)  # devices keep trying against a dead server meanwhile
            server.start()
            restarted.set()

        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(DEVICES + 1) as pool:
            chaos_done = pool.submit(chaos)
            runs = [pool.submit(settle, d, "2.0.0", deadline, pause) for d in world.devices]
            for r in runs:
                r.result(timeout=150)
            chaos_done.result(timeout=60)

        admin.close()
        admin = server.admin()
        world.demo.api = admin
        # The crash really happened mid-rollout, with reports in flight.
        assert 0 < at_kill["acked"] < expected
        assert sum(w.failed_attempts for w in world.wires.values()) > 0
        # Every report a device sent is stored exactly once, as sent, in order (checked per
        # report id above). A device may send more than one update's worth: under load an
        # attempt that meets the dead server can end and be retried as a new attempt, whose
        # reports are new reports, not resends.
        stored = assert_reports_stored_exactly(world, admin)
        assert stored >= expected
        assert_deployment_consistent(admin, dep_id, DEVICES)
    finally:
        world.close()
        admin.close()
        server.stop()
