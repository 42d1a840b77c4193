"""``GET /healthz`` latency of a running server, idle and under a bounded hostile load.

An OTAGuard server (with a published repository, so Range requests reach real metadata) runs in
its own process on 127.0.0.1; this process measures ``/healthz`` latency over one keep-alive TLS
connection, first idle, then while a third process keeps up a hostile loopback load of the
kinds issue 11 found:

* slowloris: ``--idle`` TLS connections that send part of a request head, a byte a second,
  reconnecting whenever the server closes them;
* oversized heads: requests with a 256 KiB header field (8 times the limit);
* hostile Range headers (a 5,000-digit position) on ``/tuf/metadata/timestamp.json``;
* device requests with a wrong bearer credential to ``POST /device/v1/events``;
* bad password logins (``POST /api/v1/auth/login``, an unknown name, which costs the server
  one argon2id verification like a wrong password), sent at the flood rate whether or not the
  earlier ones were answered (up to 20 in flight per flooder: the issue's 40 concurrent bad
  logins), each from another loopback source address (127.x.y.z), as a distributed attacker
  would, so the per-address failure limit does not turn them into cheap 429s.

Each flood kind runs ``--flooders`` clients of at most ``--rate`` requests/s each. Idle and
loaded phases alternate ``--rounds`` times (the machine may be shared: its own load drifts, and
falls on both phases of a round alike). The figures: per round, the median latency idle and under
load and their ratio; the median of those ratios (the headline: goal within 5x of idle) and the
worst round; pooled p50/p99 over all rounds; CPU shares; the hostile requests answered.

Run: ``.venv/bin/python bench/hostile_load.py [--samples 400] [--rounds 8] [--idle 100]``
Writes ``bench/results/hostile_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HUGE_RANGE = "bytes=" + "9" * 5000 + "-"
KINDS = "oversized,range,wrong_bearer,login"
LOGINS_IN_FLIGHT = 20  # per flooder: two flooders make the 40 concurrent bad logins
OVERSIZED_BLOCKS = 4  # of 64 KiB: a head 8 times the server's 32 KiB limit


# -- the server process ---------------------------------------------------------------------


def serve(data_dir: Path, ready: Path) -> None:
    """Run a demo server with one published release until SIGTERM; write its URL and CA."""
    from otaguard.demo import Demo

    demo = Demo(data_dir, devices=0, payload_size=64 * 1024)
    demo.start_server()
    demo.setup_repository()
    demo.release("1.0.0")
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    ready.write_text(json.dumps({"url": demo.url, "ca": str(demo.ctx.settings.tls.ca_cert)}))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    demo.close()


# -- the hostile load process ---------------------------------------------------------------


class Load:
    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self.interval = 1.0 / rate
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.counts: Counter[str] = Counter()
        self.logins: set[asyncio.Future[None]] = set()  # in flight (cancelled at the end)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx)

    async def slowloris(self) -> None:
        while True:
            try:
                reader, writer = await self.connect()
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                self.counts["slowloris_connections"] += 1
                while True:  # a byte a second until the server answers or closes
                    writer.write(b"a")
                    await writer.drain()
                    try:
                        await asyncio.wait_for(reader.read(1), timeout=1.0)
                        break
                    except TimeoutError:
                        continue
                writer.close()
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.1)

    async def oversized(self) -> None:
        block = b"a" * (64 << 10)
        while True:
            start = time.monotonic()
            try:
                reader, writer = await self.connect()
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(OVERSIZED_BLOCKS):
                    writer.write(block)
                    await writer.drain()
                status = await read_status(reader)
                self.counts[f"oversized_{status}"] += 1
                writer.close()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                self.counts["oversized_closed"] += 1
            await self.pace(start)

    async def keep_alive_flood(self, kind: str, request: bytes) -> None:
        while True:
            try:
                reader, writer = await self.connect()
                while True:
                    start = time.monotonic()
                    writer.write(request)
                    status = await read_status(reader, body=True)
                    self.counts[f"{kind}_{status}"] += 1
                    await self.pace(start)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
                self.counts[f"{kind}_closed"] += 1
                await asyncio.sleep(0.05)

    async def login_flood(self, first: int) -> None:
        """Bad logins at ``rate`` per second whether or not earlier ones were answered (up to
        ``LOGINS_IN_FLIGHT`` at once), each on a new connection from the next loopback source
        address (``first``: this flooder's first address number; flooders use disjoint ranges),
        so no address reaches the server's per-address failure limit."""
        in_flight = asyncio.Semaphore(LOGINS_IN_FLIGHT)
        n = first
        while True:
            start = time.monotonic()
            n += 1
            if in_flight.locked():
                self.counts["login_not_sent_in_flight_cap"] += 1
            else:
                await in_flight.acquire()
                task = asyncio.ensure_future(self.one_login(n))
                self.logins.add(task)
                task.add_done_callback(self.logins.discard)
                task.add_done_callback(lambda _t: in_flight.release())
            await self.pace(start)

    async def one_login(self, n: int) -> None:
        source = f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{max(2, n & 255)}"
        body = json.dumps({"username": f"nobody-{n}", "password": "x" * 16})
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.ctx, local_addr=(source, 0)
            )
            writer.write(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            status = await read_status(reader, body=True)
            self.counts[f"login_{status}"] += 1
            writer.close()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            self.counts["login_closed"] += 1

    async def pace(self, start: float) -> None:
        await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - start)))


async def read_status(reader: asyncio.StreamReader, body: bool = False) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if body:
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                await reader.readexactly(int(value))
    return int(lines[0].split(" ")[1])


def hostile_requests() -> dict[str, bytes]:
    bad_bearer = (
        b"POST /device/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-credential\r\n"
        b"X-OTAGuard-Device: sim-0001\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"\r\n{}"
    )
    hostile_range = (
        f"GET /tuf/metadata/timestamp.json HTTP/1.1\r\nHost: x\r\nRange: {HUGE_RANGE}\r\n\r\n"
    ).encode()
    return {"wrong_bearer": bad_bearer, "range": hostile_range}


async def hostile_load(
    port: int, idle: int, flooders: int, rate: float, kinds: set[str], out: Path
) -> None:
    load = Load(port, rate)
    tasks = [asyncio.ensure_future(load.slowloris()) for _ in range(idle)]
    for _ in range(flooders):
        if "oversized" in kinds:
            tasks.append(asyncio.ensure_future(load.oversized()))
        for kind, request in hostile_requests().items():
            if kind in kinds:
                tasks.append(asyncio.ensure_future(load.keep_alive_flood(kind, request)))
    if "login" in kinds:
        for f in range(flooders):
            tasks.append(
                asyncio.ensure_future(load.login_flood(f * 4096 + int(time.time()) % 4096))
            )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in [*tasks, *load.logins]:
        task.cancel()
    out.write_text(json.dumps(dict(load.counts)))


# -- the measuring process ------------------------------------------------------------------


#: a /healthz not answered within this is recorded as taking this long (and counted)
HEALTHZ_TIMEOUT = 10.0


def healthz_latencies(url: str, ca: str, samples: int, pause: float) -> list[float]:
    import httpx

    latencies = []
    verify = ssl.create_default_context(cafile=ca)
    with httpx.Client(base_url=url, verify=verify, timeout=HEALTHZ_TIMEOUT) as http:
        with contextlib.suppress(httpx.TimeoutException):
            http.get("/healthz")  # the connection (not measured)
        for _ in range(samples):
            start = time.perf_counter()
            try:
                response = http.get("/healthz")
                assert response.status_code == 200, response.status_code
                latencies.append((time.perf_counter() - start) * 1000)
            except httpx.TimeoutException:
                latencies.append(HEALTHZ_TIMEOUT * 1000)
            time.sleep(pause)
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server process did not start")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _phase(
    server: subprocess.Popen[bytes],
    info: dict[str, str],
    samples: int,
    load_args: list[str] | None,
    warmup: float,
    counts_file: Path,
) -> tuple[list[float], dict[str, float], dict[str, int]]:
    """One measuring phase: ``samples`` latencies, idle (``load_args`` None) or while a load
    process runs; with the CPU seconds server and load used and the load's request counts."""
    if load_args is None:
        start = (cpu_seconds(server.pid), time.monotonic())
        latencies = healthz_latencies(info["url"], info["ca"], samples, 0.01)
        cpu = {"server": cpu_seconds(server.pid) - start[0], "load": 0.0}
        return latencies, {**cpu, "seconds": time.monotonic() - start[1]}, {}
    load = subprocess.Popen(_self(*load_args, str(counts_file)))
    try:
        time.sleep(warmup)
        profiler = _profile(server.pid, counts_file.with_suffix(".pyspy.txt"))
        before = (cpu_seconds(server.pid), cpu_seconds(load.pid), time.monotonic())
        latencies = healthz_latencies(info["url"], info["ca"], samples, 0.01)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            profiler.wait(timeout=30)
        cpu = {
            "server": cpu_seconds(server.pid) - before[0],
            "load": cpu_seconds(load.pid) - before[1],
            "seconds": time.monotonic() - before[2],
        }
    finally:
        _stop(load)
    _settle(server.pid)
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    return latencies, cpu, counts


#: ``--profile DIR``: py-spy samples the server during each loaded phase (collapsed stacks)
PROFILE_DIR: Path | None = None


def _profile(pid: int, name: Path) -> subprocess.Popen[bytes] | None:
    if PROFILE_DIR is None:
        return None
    out = PROFILE_DIR / name.name
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [
        str(spy) if spy.exists() else "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--nonblocking",
        "--threads",
    ]
    return subprocess.Popen(
        [*cmd, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _settle(pid: int, limit: float = 15.0) -> None:
    """Wait (at most ``limit`` s) until the server has finished the work the stopped load left
    queued (password checks): under 5 % of a core over half a second, so the next idle phase
    is idle."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.025:
            return


def run(
    samples: int,
    idle: int,
    flooders: int,
    rate: float,
    warmup: float,
    kinds: str = KINDS,
    rounds: int = 8,
) -> dict[str, Any]:
    """Idle and loaded phases alternate ``rounds`` times, each taking ``samples / rounds``
    latencies. The machine is shared, so its own load drifts: each round's ratio compares a
    loaded phase with the idle phase just before it, and the headline figure is the median of
    the rounds' ratios (pooled percentiles are reported too)."""
    per_phase = max(1, samples // rounds)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ready = work / "ready.json"
        server = subprocess.Popen(
            _self("--serve", str(work / "data"), str(ready)), stderr=subprocess.DEVNULL
        )
        try:
            _wait_file(ready, server)
            info = json.loads(ready.read_text())
            port = info["url"].rsplit(":", 1)[1]
            load_args = ["--load", port, str(idle), str(flooders), str(rate), kinds]
            idle_ms: list[float] = []
            loaded_ms: list[float] = []
            per_round: list[dict[str, float]] = []
            cpu = {"server": 0.0, "load": 0.0, "seconds": 0.0}
            idle_cpu = {"server": 0.0, "seconds": 0.0}
            counts: Counter[str] = Counter()
            for i in range(rounds):
                quiet, qcpu, _ = _phase(server, info, per_phase, None, 0, work / "none")
                busy, bcpu, bcounts = _phase(
                    server, info, per_phase, load_args, warmup, work / f"counts-{i}.json"
                )
                idle_ms += quiet
                loaded_ms += busy
                counts.update(bcounts)
                for key in cpu:
                    cpu[key] += bcpu[key]
                idle_cpu["server"] += qcpu["server"]
                idle_cpu["seconds"] += qcpu["seconds"]
                q, b = statistics.median(quiet), statistics.median(busy)
                per_round.append(
                    {
                        "idle_p50_ms": round(q, 3),
                        "loaded_p50_ms": round(b, 3),
                        "ratio_p50": round(b / q, 2),
                        "load_average": round(os.getloadavg()[0], 1),
                    }
                )
            peak_rss = _peak_rss_mib(server.pid)
        finally:
            _stop(server)
    results = _results(
        idle_ms, loaded_ms, per_round, cpu, idle_cpu, counts,
        {"idle_connections": idle, "kinds": kinds, "flooders_per_kind": flooders,
         "rate_per_flooder": rate},
    )  # fmt: skip
    return {**results, "server_peak_rss_mib": peak_rss}


def _results(
    idle_ms: list[float],
    loaded_ms: list[float],
    per_round: list[dict[str, float]],
    cpu: dict[str, float],
    idle_cpu: dict[str, float],
    counts: Counter[str],
    load: dict[str, Any],
) -> dict[str, Any]:
    idle_figures, loaded = summary(idle_ms), summary(loaded_ms)
    ratios = [r["ratio_p50"] for r in per_round]
    return {
        "samples": len(idle_ms),
        "rounds": len(per_round),
        "load": load,
        "ratio_p50_median_of_rounds": round(statistics.median(ratios), 2),
        "ratio_p50_worst_round": max(ratios),
        "per_round": per_round,
        "idle": idle_figures,
        "under_load": loaded,
        "healthz_timeouts_under_load": sum(x >= HEALTHZ_TIMEOUT * 1000 for x in loaded_ms),
        "ratio_p50": round(loaded["p50_ms"] / idle_figures["p50_ms"], 2),
        "ratio_p99": round(loaded["p99_ms"] / idle_figures["p99_ms"], 2),
        "cpu_share_idle": {"server": round(idle_cpu["server"] / idle_cpu["seconds"], 2)},
        "cpu_share_under_load": {
            "server": round(cpu["server"] / cpu["seconds"], 2),
            "load_generator": round(cpu["load"] / cpu["seconds"], 2),
        },
        "hostile_requests_per_second": round(
            sum(v for k, v in counts.items() if k != "slowloris_connections") / cpu["seconds"], 1
        ),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "hostile_requests": dict(counts),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(Path(argv[1]), Path(argv[2]))
        return {}
    if argv[:1] == ["--load"]:
        port, idle, flooders, rate, kinds, out = argv[1:7]
        load = hostile_load(
            int(port), int(idle), int(flooders), float(rate), set(kinds.split(",")), Path(out)
        )
        asyncio.run(load)
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--idle", type=int, default=100, help="slowloris connections")
    parser.add_argument("--flooders", type=int, default=2, help="clients per flood kind")
    parser.add_argument("--rate", type=float, default=10, help="requests/s per flooder")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--kinds", default=KINDS, help="flood kinds, comma-separated")
    parser.add_argument("--rounds", type=int, default=8, help="idle/loaded alternations")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hostile_load.json")
    parser.add_argument("--profile", type=Path, help="py-spy the server into this directory")
    args = parser.parse_args(argv)
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    if PROFILE_DIR is not None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    results = run(
        args.samples, args.idle, args.flooders, args.rate, args.warmup, args.kinds, args.rounds
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
