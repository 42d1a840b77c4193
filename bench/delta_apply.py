"""The device side of a delta update, measured through the real agent on a 512 MiB image.

A real server (TLS on 127.0.0.1, the demo world) publishes release 2.0.0 (512 MiB payload) and
a maker-signed delta target rebuilding it from 1.0.0; a simulated device runs 1.0.0 from slot a
and is driven by ``otaguard agent run --once`` in its own process, exactly as on a device. The
server's director offers the delta with the assignment (the bench patches the in-process
server's signing to name it, as the delta-offering server does when a device reports the
source image). The agent fetches the patch, checks it against the signed hash, rebuilds the
image from slot a into slot b (``agent/delta_steps.py``: segment checkpoints, fsync, journal),
reads slot b back against the signed full-image hash and switches.

Figures, in one run on one disk:

* **check to accept**: check-in, TUF refresh, and the one-time sha256 of the active slot (the
  factory image's hash is not in the journal yet), before the update is journaled;
* **peak RSS growth**: the delta install's ``VmHWM`` minus the ``VmHWM`` of the same agent
  command on the same device when there is nothing to install (the agent's baseline: imports,
  TLS, check-in); goal < 32 MiB;
* **apply throughput**: image bytes over the time from accepting the assignment to the rebuilt
  slot (patch fetch + apply, from the agent's transition log), against a plain
  ``sha256 + write + fsync`` copy of the same image file (1 MiB chunks) in the same run; goal
  >= 0.5 x the copy; also the read-back verification that follows, and the patch size.

The image pair: 1.0.0's payload is 512 MiB of pseudo-random (incompressible) bytes; 2.0.0 has a
window of ``--window-mib`` MiB (default 32) changed as a rebuilt firmware changes: an 8-byte
edit every 4 KiB, 512 KiB of new bytes inserted and 512 KiB removed. The rest of the slot is
unchanged, so the patch copies it from the source; the window is what bsdiff matches (the
encoder holds it, and both images, in memory: generation takes about a minute here).

    .venv/bin/python bench/delta_apply.py [--size-mib 512] [--window-mib 32] [--out bench/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

MIB = 1 << 20

from agent_memory import baseline_copy  # noqa: E402  (same plain-copy baseline as the full install)


def payloads(size: int, window: int, seed: int = 5) -> tuple[bytes, bytes]:
    """1.0.0 and 2.0.0 payloads: ``size`` random bytes, and a copy whose ``window`` bytes in
    the middle changed (edits every 4 KiB, an insertion and a deletion of 512 KiB)."""
    rng = random.Random(seed)
    old = b"".join(rng.randbytes(min(MIB, size - at)) for at in range(0, size, MIB))
    start = (size - window) // 2
    region = bytearray(old[start : start + window])
    for at in range(0, len(region) - 8, 4096):
        region[at : at + 8] = rng.randbytes(8)
    cut = len(region) // 3
    region[cut : cut + (512 << 10)] = b""
    region[2 * cut : 2 * cut] = rng.randbytes(512 << 10)
    new = old[:start] + bytes(region) + old[start + window :]
    return old, new


def transitions(log_text: str) -> dict[str, float]:
    """Time of each state-transition event (first occurrence) in an agent's JSON log."""
    times: dict[str, float] = {}
    for line in log_text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "transition":
                ts = dt.datetime.fromisoformat(str(entry["ts"])).timestamp()
                times.setdefault(str(entry["event"]), ts)
    return times


def run_agent(config: Path) -> tuple[int, str]:
    """``otaguard agent run --once`` in a child process: its peak RSS (KiB) and its log."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise SystemExit(f"agent failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return int(json.loads(lines[-1])["vm_hwm_kib"]), proc.stderr


def child(config: str) -> None:
    from otaguard.cli.main import app

    try:
        app(["agent", "run", "--once", "--config", config], standalone_mode=False)
    finally:
        status = Path("/proc/self/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        print(json.dumps({"vm_hwm_kib": int(hwm.split()[1])}), flush=True)


def offer_delta(full_name: str, delta_path: str) -> None:
    """The in-process server's director names the delta in assignments of ``full_name``."""
    import otaguard.server.checkin as checkin

    real = getattr(checkin, "sign_assignment")  # noqa: B009 (not re-exported for mypy)

    def signing(*args: Any, **kwargs: Any) -> bytes:
        if kwargs["target"].path == full_name:
            kwargs["delta_path"] = delta_path
        signed: bytes = real(*args, **kwargs)
        return signed

    setattr(checkin, "sign_assignment", signing)  # noqa: B010


def prepare(work: Path, size: int, window: int) -> tuple[Path, Path, Path, dict[str, Any]]:
    """Both images (files) and the patch; returns (v1, v2, patch, generation figures)."""
    from otaguard.delta import encode
    from otaguard.demo import HARDWARE
    from otaguard.device.image import build_image

    started = time.perf_counter()
    p1, p2 = payloads(size, window)
    v1, v2, patch = work / "v1.img", work / "v2.img", work / "v1-v2.otadelta"
    v1.write_bytes(build_image("1.0.0", HARDWARE, payload=p1))
    v2.write_bytes(build_image("2.0.0", HARDWARE, security_version=1, payload=p2))
    del p1, p2
    pair_s = time.perf_counter() - started
    started = time.perf_counter()
    info = encode(v1, v2, patch, allow_full=False)
    encode_s = time.perf_counter() - started
    return (
        v1,
        v2,
        patch,
        {
            "pair_s": round(pair_s, 1),
            "encode_s": round(encode_s, 1),
            "patch_bytes": info.patch_size,
            "segments": info.segments,
        },
    )


def publish(d: Any, v2: Path, patch: Path, v1: Path) -> tuple[str, str]:
    """Release 2.0.0 and the delta target from 1.0.0; return their target paths."""
    from kit.delta import sign_and_publish
    from otaguard.demo import HARDWARE
    from otaguard.repo.delta_targets import make_delta_target
    from otaguard.repo.images import ReleaseInfo
    from otaguard.repo.roles import TARGETS

    name = f"{HARDWARE}/firmware-2.0.0.img"
    d.repo.add_target(v2, name, ReleaseInfo("2.0.0", (HARDWARE,), 1))
    full = d.repo.targets().signed.targets[name]

    def sha(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(MIB):
                h.update(chunk)
        return h.hexdigest()

    target = make_delta_target(
        full,
        source_sha256=sha(v1),
        source_length=v1.stat().st_size,
        patch_sha256=sha(patch),
        patch_length=patch.stat().st_size,
    )
    md = d.repo.targets_metadata(TARGETS)
    staged = d.repo.staged_dir / target.path
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(patch.read_bytes())
    md.signed.targets[target.path] = target
    d.repo.save_new_version(TARGETS, md)
    sign_and_publish(d)
    return name, target.path


def measure(work: Path, size: int, window: int) -> dict[str, Any]:
    from kit.agent import write_agent_toml
    from otaguard.demo import Demo

    v1, v2, patch, generation = prepare(work, size, window)
    d = Demo(work / "world", devices=1, port=0, payload_size=64 * 1024)
    d.start_server()
    try:
        d.setup_repository()
        name, delta_path = publish(d, v2, patch, v1)
        offer_delta(name, delta_path)
        d.provision_fleet(v1.read_bytes())
        (dev,) = d.fleet
        dev.close()
        config = write_agent_toml(dev)
        idle_kib, _ = run_agent(config)  # nothing deployed: the agent's baseline
        d.deploy(name)
        delta_kib, log = run_agent(config)
        t = transitions(log)
        if not {"accept", "downloaded", "verified"} <= t.keys():
            raise SystemExit(f"the delta install did not reach verification: {log[-3000:]}")
        if '"delta_fallback"' in log or "falling back" in log:
            raise SystemExit(f"the agent fell back to the full image: {log[-3000:]}")
        if dev.slots.path("b").stat().st_size != v2.stat().st_size:
            raise SystemExit("slot b does not hold the image")
        copy_s = baseline_copy(v2, work / "copy.img")
    finally:
        d.close()
    image_mib = v2.stat().st_size / MIB
    apply_s = t["downloaded"] - t["accept"]
    verify_s = t["verified"] - t["downloaded"]
    return {
        "image_mib": round(image_mib, 1),
        "window_mib": window // MIB,
        **generation,
        "agent_idle_peak_rss_mib": round(idle_kib / 1024, 1),
        "agent_delta_peak_rss_mib": round(delta_kib / 1024, 1),
        "rss_growth_mib": round((delta_kib - idle_kib) / 1024, 1),
        "check_to_accept_s": round(t["accept"] - t["check"], 2) if "check" in t else None,
        "apply_s": round(apply_s, 2),
        "apply_mib_s": round(image_mib / apply_s, 1),
        "verify_s": round(verify_s, 2),
        "copy_s": round(copy_s, 2),
        "copy_mib_s": round(image_mib / copy_s, 1),
        "apply_ratio_to_copy": round(copy_s / apply_s, 3),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512, help="image payload size")
    ap.add_argument("--window-mib", type=int, default=32, help="changed window of the image")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (same disk)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        result = measure(Path(tmp), args.size_mib * MIB, args.window_mib * MIB)
    summary = {
        "benchmark": "delta_apply",
        "path": "otaguard agent run --once, delta offered (loopback HTTPS)",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        **result,
        "rss_goal_met": result["rss_growth_mib"] < 32,
        "throughput_goal_met": result["apply_ratio_to_copy"] >= 0.5,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "delta_apply.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
