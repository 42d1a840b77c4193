"""Check-in throughput of the OTAGuard server against the ceiling of its own server stack.

For each database (SQLite, the embedded default, and PostgreSQL), an ``otaguard server`` process
is started on 127.0.0.1 with TLS, N devices are registered, and a separate load process (``wrk``
with a Lua script cycling through the devices' real check-in requests, so every request is an
authenticated, recorded check-in of a different device) drives ``POST /device/v1/checkin`` for a
fixed time. In the same run the same load drives a bare ASGI app answering a fixed JSON body on
the same stack (uvicorn, same TLS setup): the ceiling. The figures are check-ins/s, p50/p99
latency, and the ratio to the ceiling (goal >= 0.5).

To tell the check-in's own cost from the web framework's, the same load also drives
``GET /healthz`` on the same OTAGuard server process (FastAPI and its middleware,
no database, no signature): the ``framework`` figures, with their ratio to the ceiling too.

Run: ``.venv/bin/python bench/checkin_throughput.py [--devices 500] [--duration 10]``
Writes ``bench/results/checkin_throughput.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

LUA = r"""
-- Each wrk thread takes its own devices (``id``, set in ``setup``), and each device has two
-- manifests (same clock, different nonces) sent in turn: the server refuses a manifest equal
-- to the last one it accepted from that device (replay), as a real agent never sends.
local lines = {}
local i = 0
local threads = {}
setup = function(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end
init = function(args)
  local n = 0
  local count = tonumber(args[2]) or 1
  for line in io.lines(args[1]) do
    n = n + 1
    local dev, cred, body = line:match("([^\t]*)\t([^\t]*)\t(.*)")
    local device_index = math.floor((n - 1) / 2)
    if (device_index % count) == (id or 0) then
    lines[#lines + 1] = wrk.format(METHOD, PATH, {
      ["Content-Type"] = "application/json",
      ["X-OTAGuard-Device"] = dev,
      ["Authorization"] = "Bearer " .. cred,
    }, METHOD ~= "GET" and body or nil)
    end
  end
  -- every device's first manifest, then every device's second: a device's two requests are
  -- a whole round of devices apart, so with more devices than connections they are never in
  -- flight together (reordered, the older would follow the newer: a refused replay)
  local firsts, seconds = {}, {}
  for k = 1, #lines do
    if k % 2 == 1 then firsts[#firsts + 1] = lines[k] else seconds[#seconds + 1] = lines[k] end
  end
  lines = {}
  for _, l in ipairs(firsts) do lines[#lines + 1] = l end
  for _, l in ipairs(seconds) do lines[#lines + 1] = l end
  if #lines >= 1 then i = math.random(0, #lines - 1) end
end
request = function()
  i = i % #lines + 1
  return lines[i]
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, ca: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, verify=_ctx(ca), timeout=2).status_code < 500:
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _ctx(ca: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(ca))


@contextmanager
def process(cmd: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this run (dropped afterwards); None if unreachable."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"otaguard_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkin_lines(base: str, ca: Path, admin_token: str, devices: int) -> list[str]:
    """Register ``devices`` devices, each with its own manifest key; one wrk request line
    (device, credential, body: the device's signed DSSE version manifest) per device and
    manifest, two manifests a device (see ``LUA``)."""
    from otaguard.api_client import ManagementClient
    from otaguard.crypto.keys import generate_signer
    from otaguard.director.manifest import VersionManifest, sign_manifest

    api = ManagementClient(base, admin_token, ca)
    lines = []
    signed_at = dt.datetime.now(dt.UTC)  # one clock for all: a device's two differ by nonce
    try:
        for i in range(devices):
            device_id = f"bench-{i:05d}"
            key = generate_signer()
            pub = key.public_key
            credential = api.register_device(
                device_id,
                "bench-board",
                ["bench"],
                manifest_key={"keyid": pub.keyid, **pub.to_dict()},
            )
            for _turn in range(2):  # sent in turn: never the last accepted one again
                manifest = VersionManifest.create(
                    device_id=device_id,
                    hardware="bench-board",
                    version="1.0.0",
                    slot="a",
                    security_version=0,
                    agent_version="bench",
                    now=signed_at,
                )
                envelope = sign_manifest(manifest, key)
                body = json.dumps({"manifest": envelope}, separators=(",", ":"))
                lines.append(f"{device_id}\t{credential}\t{body}")
    finally:
        api.close()
    return lines


def lua_script(method: str, path: str) -> str:
    """The wrk script sending ``method path`` with each line's device, credential and body."""
    return f"local METHOD, PATH = {json.dumps(method)}, {json.dumps(path)}\n" + LUA


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str,
    lines_file: Path,
    duration: int,
    connections: int,
    threads: int,
    method: str = "POST",
    path: str = "/device/v1/checkin",
    server_pid: int | None = None,
) -> dict[str, float]:
    """wrk's figures; with ``server_pid``, also the server's CPU time per request (a figure
    that does not depend on what else the machine runs at the time)."""
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    script = lines_file.with_suffix(f".{method.lower()}.lua")
    script.write_text(lua_script(method, path))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(lines_file),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    result = parse_wrk(out)
    if server_pid:
        cpu = cpu_seconds(server_pid) - cpu_before
        result["server_cpu_us_per_request"] = round(cpu / max(result["requests"], 1) * 1e6, 1)
    return result


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"unparsable latency {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "requests_per_s": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "requests": total,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def otaguard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from otaguard.cli.main import main; main()", *args]


def measure_server(
    work: Path,
    database: str | None,
    devices: int,
    duration: int,
    connections: int,
    threads: int,
    with_framework: bool = False,
    server_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check-in figures of an ``otaguard server`` on ``database`` (None: SQLite); with
    ``with_framework``, also the ``GET /healthz`` figures of the same process."""
    variant = "".join(f"-{a.strip('-')}" for a in server_args)
    data = work / ("server-" + ("pg" if database else "sqlite") + variant)
    port = free_port()
    # No access log: the ceiling's uvicorn logs at "warning" (no line per request) too.
    cmd = otaguard_cmd(
        "server", "--data-dir", str(data), "--port", str(port), "--no-access-log", *server_args
    )
    if database:
        cmd += ["--database", database]
    with process(cmd) as proc:
        ca = data / "tls" / "ca.pem"
        deadline = time.monotonic() + 30
        while not ca.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        base = f"https://127.0.0.1:{port}"
        wait_healthy(f"{base}/healthz", ca)
        token = (data / "admin-token").read_text().strip()
        lines_file = work / f"lines-{port}.txt"
        lines_file.write_text("\n".join(checkin_lines(base, ca, token, devices)) + "\n")
        result = run_wrk(
            f"{base}/device/v1/checkin",
            lines_file,
            duration,
            connections,
            threads,
            server_pid=proc.pid,
        )
        result["devices"] = devices
        if with_framework:
            framework = run_wrk(
                f"{base}/healthz",
                lines_file,
                duration,
                connections,
                threads,
                "GET",
                "/healthz",
                server_pid=proc.pid,
            )
            result["framework"] = framework
    return result


def measure_ceiling(work: Path, duration: int, connections: int, threads: int) -> dict[str, Any]:
    port = free_port()
    tls_dir = work / "bare-tls"
    cmd = [
        sys.executable,
        str(HERE / "bare_asgi.py"),
        "--port",
        str(port),
        "--tls-dir",
        str(tls_dir),
    ]
    with process(cmd) as proc:
        deadline = time.monotonic() + 30
        while not (tls_dir / "ca.pem").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        base = f"https://127.0.0.1:{port}"
        wait_healthy(f"{base}/", tls_dir / "ca.pem")
        lines_file = work / "lines-bare.txt"
        body = '{"hardware":"bench-board","version":"1.0.0","slot":"a","security_version":0}'
        lines_file.write_text(f"bare-1\tx\t{body}\n")
        return run_wrk(
            f"{base}/device/v1/checkin",
            lines_file,
            duration,
            connections,
            threads,
            server_pid=proc.pid,
        )


def manifest_verify_us(rounds: int = 2000) -> float:
    """Microseconds one server-side verification of a device's signed version manifest takes
    here (DSSE envelope, Ed25519 via securesystemslib and cryptography), in this process."""
    from otaguard.crypto.keys import generate_signer
    from otaguard.director.manifest import VersionManifest, sign_manifest, verify_manifest

    key = generate_signer()
    pub = key.public_key
    key_json = json.dumps({"keyid": pub.keyid, **pub.to_dict()})
    manifest = VersionManifest.create(
        device_id="bench-0",
        hardware="bench-board",
        version="1.0.0",
        slot="a",
        security_version=0,
        agent_version="bench",
    )
    envelope = sign_manifest(manifest, key)
    verify_manifest(envelope, key_json, device_id="bench-0")
    start = time.perf_counter()
    for _ in range(rounds):
        verify_manifest(envelope, key_json, device_id="bench-0")
    return round((time.perf_counter() - start) / rounds * 1e6, 1)


def run(
    devices: int, duration: int, connections: int, threads: int, backends: list[str]
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk; `make test` installs it)")
    results: dict[str, Any] = {
        "command": " ".join(["bench/checkin_throughput.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "load": {
            "tool": "wrk",
            "connections": connections,
            "threads": threads,
            "duration_s": duration,
        },
    }
    results["manifest_verify_us"] = manifest_verify_us()
    with tempfile.TemporaryDirectory(prefix="otaguard-bench-") as tmp:
        work = Path(tmp)
        results["ceiling"] = measure_ceiling(work, duration, connections, threads)
        ceiling = results["ceiling"]["requests_per_s"]
        if "sqlite" in backends:
            r = measure_server(work, None, devices, duration, connections, threads, True)
            framework = r.pop("framework")
            framework["ratio_to_ceiling"] = round(framework["requests_per_s"] / ceiling, 3)
            results["framework"] = framework
            r["ratio_to_ceiling"] = round(r["requests_per_s"] / ceiling, 3)
            r["ratio_to_framework"] = round(r["requests_per_s"] / framework["requests_per_s"], 3)
            results["sqlite"] = r
        if "sqlite-route" in backends:  # the same server, check-ins through the FastAPI route
            r = measure_server(
                work, None, devices, duration, connections, threads, False, ("--no-lean-checkin",)
            )
            r["ratio_to_ceiling"] = round(r["requests_per_s"] / ceiling, 3)
            results["sqlite_framework_route"] = r
        if "postgres" in backends:
            with postgres_database() as url:
                if url is None:
                    results["postgres"] = {"skipped": "PostgreSQL unreachable on 127.0.0.1:5432"}
                else:
                    r = measure_server(work, url, devices, duration, connections, threads)
                    r["ratio_to_ceiling"] = round(r["requests_per_s"] / ceiling, 3)
                    if "framework" in results:
                        fw = results["framework"]["requests_per_s"]
                        r["ratio_to_framework"] = round(r["requests_per_s"] / fw, 3)
                    results["postgres"] = r
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres, sqlite-route (check-ins through the FastAPI "
        "route, --no-lean-checkin)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "checkin_throughput.json")
    args = parser.parse_args(argv)
    results = run(
        args.devices, args.duration, args.connections, args.threads, args.backends.split(",")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
