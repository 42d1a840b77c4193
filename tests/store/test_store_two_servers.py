"""Two server processes on one PostgreSQL database serve one fleet: one deployment, devices
split between them, consistent results and no assignment counter handed out twice."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from otaguard.crypto.device_key import load_device_key
from otaguard.crypto.keys import load_public_key
from otaguard.demo import HARDWARE
from otaguard.director.assignment import verify_assignment
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.net.tls import tls_context

from .conftest import pg_schema_url
from .fleet_world import (
    ServerProcess,
    assert_deployment_consistent,
    assert_reports_stored_exactly,
    build_world,
    free_port,
    settle,
)

DEVICES = 8


@pytest.mark.postgres
def test_two_servers_one_database(tmp_path: Path, pg_database: str) -> None:
    url = pg_schema_url(pg_database)
    data = tmp_path / "server"  # shared: online keys, admin token, TLS material, blobs
    a = ServerProcess(data, free_port(), database=url)
    a.start()
    b = ServerProcess(data, free_port(), database=url)
    b.start()
    admin_a, admin_b = a.admin(), b.admin()
    world = build_world(tmp_path / "world", admin_a, [a.url, b.url], a.ca, DEVICES)
    try:
        assert admin_a.online_keys() == admin_b.online_keys()
        dep_id = int(admin_b.create_deployment("both", world.v2_name, {"all": True})["id"])

        # Check-ins of the same devices through both servers at once: each gets its own
        # counter, and the assignments verify against the one shared director key.
        director = load_public_key(world.devices[0].config.director_key_file)
        hammered = [d.config for d in world.devices[:3]]

        def check_in(job: tuple[int, int]) -> tuple[str, int]:
            i, n = job
            cfg = hammered[i % len(hammered)]
            server = (a, b)[n % 2]
            with httpx.Client(
                base_url=server.url,
                verify=tls_context(server.ca),
                headers={
                    "X-OTAGuard-Device": cfg.device_id,
                    "Authorization": f"Bearer {cfg.credential()}",
                },
                timeout=30,
            ) as http:
                report = VersionManifest.create(
                    device_id=cfg.device_id,
                    hardware=HARDWARE,
                    version="1.0.0",
                    slot="a",
                    security_version=0,
                    agent_version=None,
                )
                signed = sign_manifest(report, load_device_key(cfg.manifest_key_path))
                r = http.post("/device/v1/checkin", json={"manifest": signed})
            if r.status_code == 401 and "not newer" in r.text:
                # Signed before another check-in of the same device that won the race to the
                # database: refused as a replay (a real agent never has two in flight).
                return cfg.device_id, 0
            assert r.status_code == 200, r.text
            assignment = verify_assignment(
                r.json()["assignment"].encode(), director, device_id=cfg.device_id, min_counter=1
            )
            assert assignment.deployment_id == dep_id
            return cfg.device_id, assignment.counter

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(check_in, [(i, n) for i in range(12) for n in range(4)]))
        counters: dict[str, list[int]] = defaultdict(list)
        for device_id, counter in results:
            if counter:  # 0: refused as a replay, nothing recorded, no counter used
                counters[device_id].append(counter)
        assert len(counters) == len(hammered)
        for got in counters.values():
            assert sorted(got) == list(range(1, len(got) + 1))

        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(DEVICES) as pool:
            runs = [
                pool.submit(settle, d, "2.0.0", deadline, lambda: time.sleep(0.01))
                for d in world.devices
            ]
            for r in runs:
                r.result(timeout=150)

        for admin in (admin_a, admin_b):
            world.demo.api = admin
            assert assert_reports_stored_exactly(world, admin) == DEVICES * 7
            assert_deployment_consistent(admin, dep_id, DEVICES)
        assert admin_a.deployment(dep_id) == admin_b.deployment(dep_id)
        # Each device accepted a counter above every one the concurrent check-ins used.
        for dev in world.devices:
            assert dev.agent is not None
            assert dev.agent.journal.last_counter > max(counters.get(dev.config.device_id, [0]))
    finally:
        world.demo.api = admin_a
        world.close()
        admin_b.close()
        a.stop()
        b.stop()
