"""Server time to render the web console's fleet overview with 10,000 devices and 100
deployments in the database (issue 13; goal: under 200 ms).

A server context on SQLite (the embedded default) is filled in bulk: 10,000 devices over four
hardware types and five versions, last seen from seconds to weeks ago, in every update state;
100 deployments of 100 devices each, in every deployment state, with every target status.
Then ``GET /console/`` is requested in process through the whole application (session check,
RBAC, audit middleware, security headers, the grouped count query, the deployment tables,
Jinja2 rendering): the first request (cold: templates compiled, caches empty) and the median
and 95th percentile of the next ones. Baseline in the same run: ``GET /healthz`` through the same
stack (the framework's own floor), and the API's ``GET /api/v1/devices?limit=100``.

Then the rollout pages: a phased rollout (1 % -> 10 % -> 50 % -> 100 %) over every device and
300 alerts are added, and the phased deployment's page, the alerts page, and one uncached read
of the live progress (what a poll costs once a second per deployment at most: the progress
cache reuses it for every other browser) are timed.

    .venv/bin/python bench/console_render.py [--devices 10000] [--deployments 100] [--runs 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from otaguard.fleet.alerts import Alert, AlertKind, Severity
from otaguard.fleet.phases import standard_plan
from otaguard.server.app import create_app
from otaguard.server.console.deployment_routes import progress_of
from otaguard.server.console.session import SESSION_COOKIE
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.store.models import Deployment, DeploymentTarget, Device, DeviceTag, Release

STATES = ["idle", "committed", "downloading", "installed", "rolled_back", "failed"]
TARGET_STATUSES = ["succeeded", "succeeded", "succeeded", "failed", "in_progress", "pending"]
DEPLOYMENT_STATES = ["completed"] * 6 + ["active"] * 2 + ["awaiting_approval", "cancelled"]


def fill(ctx: ServerContext, devices: int, deployments: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    hardware = [f"board-{i}" for i in range(4)]
    versions = ["1.0.0", "1.1.0", "2.0.0", "2.1.0", "3.0.0"]
    ids = [f"dev-{i:05d}" for i in range(devices)]
    with ctx.store.session() as s:
        for v in versions:
            s.execute(
                insert(Release).values(
                    target_name=f"fw-{v}.img",
                    version=v,
                    hardware=hardware,
                    security_version=0,
                    sha256="ab" * 32,
                    length=1 << 20,
                    custom={},
                )
            )
        s.execute(
            insert(Device),
            [
                {
                    "id": d,
                    "hardware": rng.choice(hardware),
                    "credential_hash": "0" * 64,
                    "current_version": rng.choice(versions),
                    "update_state": rng.choice(STATES),
                    "last_seen": now - dt.timedelta(seconds=rng.choice([5, 60, 3600, 10**6])),
                }
                for d in ids
            ],
        )
        s.execute(
            insert(DeviceTag),
            [{"device_id": d, "tag": f"group-{i % 100}"} for i, d in enumerate(ids)],
        )
        for n in range(deployments):
            dep = s.execute(
                insert(Deployment)
                .values(
                    name=f"rollout-{n}",
                    target_name=f"fw-{versions[n % 5]}.img",
                    selector={"tag": f"group-{n}"},
                    state=rng.choice(DEPLOYMENT_STATES),
                    created_by="bench",
                    created_at=now - dt.timedelta(minutes=deployments - n),
                )
                .returning(Deployment.id)
            ).scalar_one()
            members = ids[n % 100 :: 100]
            s.execute(
                insert(DeploymentTarget),
                [
                    {"deployment_id": dep, "device_id": d, "status": rng.choice(TARGET_STATUSES)}
                    for d in members
                ],
            )


def timed(client: TestClient, path: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--deployments", type=int, default=100)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ServerContext.open(ServerSettings(data_dir=Path(tmp) / "server"))
        fill(ctx, args.devices, args.deployments)
        ctx.identity.add_user("bench", ["viewer"])
        token = ctx.identity.create_token("bench", scopes=["*"]).token
        with TestClient(create_app(ctx), base_url="https://testserver") as client:
            first_health = timed(client, "/healthz", 1)[0]
            client.cookies.set(SESSION_COOKIE, token)
            first = timed(client, "/console/", 1)[0]
            page = client.get("/console/").text
            assert f">{args.devices}</span> devices" in page
            overview = timed(client, "/console/", args.runs)
            client.cookies.clear()
            health = timed(client, "/healthz", args.runs)
            api = timed_api(client, token, args.runs)
            client.cookies.set(SESSION_COOKIE, token)
            rollout_figures(ctx, client, args.runs)
        ctx.close()
    med = statistics.median(overview)
    p95 = sorted(overview)[int(0.95 * (len(overview) - 1))]
    print(f"devices {args.devices}, deployments {args.deployments}, runs {args.runs}")
    print(f"GET /console/           first {first:.1f} ms, median {med:.1f} ms, p95 {p95:.1f} ms")
    print(
        f"GET /healthz            first {first_health:.1f} ms, median {statistics.median(health):.2f} ms (overview / health = {med / statistics.median(health):.0f})"
    )
    print(
        f"GET /api/v1/devices?100 median {statistics.median(api):.1f} ms (overview / API page = {med / statistics.median(api):.2f})"
    )
    print(
        f"goal (under 200 ms): median {'met' if med < 200 else 'NOT met'}, p95 {'met' if p95 < 200 else 'NOT met'}, first request {'met' if first < 200 else 'NOT met'}"
    )


def add_rollout_and_alerts(ctx: ServerContext, alerts: int = 300) -> int:
    dep = ctx.store.create_deployment(
        name="phased",
        target_name="fw-3.0.0.img",
        selector={"all": True},
        created_by="bench",
        plan=standard_plan(soak_seconds=600),
        allow_downgrade=True,
    )
    kinds = list(AlertKind)
    ctx.store.monitoring.raise_alerts(
        Alert(kinds[i % len(kinds)], Severity.WARNING, f"device:dev-{i:05d}", "bench", {"n": i})
        for i in range(alerts)
    )
    return dep.id


def rollout_figures(ctx: ServerContext, client: TestClient, runs: int) -> None:
    dep = add_rollout_and_alerts(ctx)
    for label, path in (
        ("phased deployment page", f"/console/deployments/{dep}"),
        ("alerts page (300)", "/console/alerts?show=all"),
        ("overview, now with them", "/console/"),
    ):
        times = timed(client, path, runs)
        print(f"GET {path:28} {label}: median {statistics.median(times):.1f} ms")
    reads = []
    for _ in range(runs):
        start = time.perf_counter()
        body = progress_of(ctx, dep)
        reads.append((time.perf_counter() - start) * 1000)
    assert len(body["rollout"]["phases"]) == 4
    print(f"live progress, one uncached read (4 phases): median {statistics.median(reads):.1f} ms")


def timed_api(client: TestClient, token: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.get("/api/v1/devices?limit=100", headers={"Authorization": f"Bearer {token}"})
        out.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200
    return out


if __name__ == "__main__":
    main()
