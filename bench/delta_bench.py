"""Delta updates: patch size, generation cost and device apply cost, ours against open tools.

For every pair of ``bench/delta_corpus.py`` (real minor releases of compiled programs and
libraries, a root-filesystem tar, compressed firmware) and every tool, in one run:

* patch size, generation wall time and peak RSS (each generation in its own process, peak RSS
  from ``wait4``), and that applying the patch gives back the new file byte for byte;
* apply wall time and peak RSS (own process), for every tool;
* baselines: the new image compressed alone with ``zstd --ultra -22 --long=31`` (the goal's
  ceiling) and with ``xz -9e``.

Tools: bsdiff4 (BSDIFF40, bzip2), HDiffPatch (PyPI ``hdiffpatch``, LZMA2 level 9, 64 MiB
window, its best compressor here), detools (bsdiff matching, LZMA, sequential), xdelta3 (``-9
-S djw``, source window over the whole file), ``zstd --patch-from`` (``--ultra -22
--long=31``), and ours (``otaguard.delta.encode``).

Goal ratio: mean patch size over the ``executable`` pairs, ours / the best single open tool
(the tool with the smallest such mean); goal <= 0.9; and no patch of ours larger than the
zstd-compressed image.

Device apply: a 512 MiB image pair (the rootfs tar A or B followed by the same 472 MiB of
pseudo-random, incompressible "partition" data, i.e. a slot where 40 MiB of files changed) is
applied by ``DeltaDecoder`` in its own process: source read from a file, output written with
sha256 + write + one ``fsync``, against a plain ``sha256 + write + fsync`` copy of the new image
(1 MiB chunks) in the same run; peak RSS growth is the process's ``VmHWM`` minus its RSS just
before applying.

Device apply through the real agent: with ``--apply-mib N`` (default 512; 0 skips it) the run
also measures ``bench/delta_apply.py`` (a real server, ``otaguard agent run --once`` installing
an N MiB image from a delta: peak RSS growth over the agent's idle baseline, apply throughput
against a plain copy, generation time and memory), under ``agent_apply`` in the JSON; the
report (``bench/delta_report.py``) prints it with the rest.

Usage: ``.venv/bin/python bench/delta_bench.py [--pairs a,b] [--executables] [--tools
ours,hdiffpatch,bsdiff4] [--no-image] [--apply-mib 512] [--out bench/results/delta_bench.json]``;
writes the JSON and prints the goal (``bench/delta_report.py`` renders the tables). ``--tools``
measures a subset (the goal's ratio is then against the best open tool measured). A quick run:
``--pairs orjson-3.10.6-3.10.7 --no-image --apply-mib 32``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delta_corpus import Pair, load_pairs

PY = sys.executable
THIS = str(Path(__file__).resolve())
TOOLS = ["bsdiff4", "hdiffpatch", "detools", "xdelta3", "zstd", "ours"]
OPEN_TOOLS = TOOLS[:-1]


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process, measured by GNU time (a
    child forked from this process would count this process's memory in its own peak)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", stats.name, *cmd],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr.strip()[-400:]}")
        wall, rss_kib = stats.read().split()[-2:]
    return float(wall), int(rss_kib) / 1024, proc.stdout


def _pow2_at_least(n: int) -> int:
    return 1 << max(24, (n - 1).bit_length())


def create_cmd(tool: str, old: Path, new: Path, patch: Path) -> list[str]:
    if tool == "xdelta3":
        window = str(_pow2_at_least(old.stat().st_size))
        return [
            "xdelta3",
            "-f",
            "-e",
            "-9",
            "-S",
            "djw",
            "-B",
            window,
            "-s",
            str(old),
            str(new),
            str(patch),
        ]
    if tool == "zstd":
        return [
            "zstd",
            "-q",
            "-f",
            "--ultra",
            "-22",
            "--long=31",
            f"--patch-from={old}",
            str(new),
            "-o",
            str(patch),
        ]
    return [PY, THIS, "--child", "create", tool, str(old), str(new), str(patch)]


def apply_cmd(tool: str, old: Path, patch: Path, out: Path) -> list[str]:
    if tool == "xdelta3":
        window = str(_pow2_at_least(old.stat().st_size))
        return ["xdelta3", "-f", "-d", "-B", window, "-s", str(old), str(patch), str(out)]
    if tool == "zstd":
        return [
            "zstd",
            "-q",
            "-f",
            "-d",
            "--long=31",
            f"--patch-from={old}",
            str(patch),
            "-o",
            str(out),
        ]
    return [PY, THIS, "--child", "apply", tool, str(old), str(patch), str(out)]


def child_create(tool: str, old: Path, new: Path, patch: Path) -> None:
    if tool == "bsdiff4":
        import bsdiff4

        bsdiff4.file_diff(str(old), str(new), str(patch))
    elif tool == "hdiffpatch":
        import hdiffpatch

        config = hdiffpatch.Lzma2Config(level=9, window=26)
        patch.write_bytes(
            hdiffpatch.diff(old.read_bytes(), new.read_bytes(), config, validate=False)
        )
    elif tool == "detools":
        import detools

        with old.open("rb") as a, new.open("rb") as b, patch.open("wb") as p:
            detools.create_patch(a, b, p, compression="lzma")
    elif tool == "ours":
        from otaguard.delta import encode

        info = encode(old, new, patch)
        print(info.algorithm.name, info.matcher)


def child_apply(tool: str, old: Path, patch: Path, out: Path) -> None:
    if tool == "bsdiff4":
        import bsdiff4

        bsdiff4.file_patch(str(old), str(out), str(patch))
    elif tool == "hdiffpatch":
        import hdiffpatch

        out.write_bytes(hdiffpatch.apply(old.read_bytes(), patch.read_bytes()))
    elif tool == "detools":
        import detools

        with old.open("rb") as a, patch.open("rb") as p, out.open("wb") as o:
            detools.apply_patch(a, p, o)
    elif tool == "ours":
        apply_ours(old, patch, out)


def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def apply_ours(old: Path, patch: Path, out: Path) -> None:
    """Device-style apply: sha256 inside the decoder, write, one fsync; prints timing/RSS."""
    from otaguard.delta import DeltaDecoder

    before = _vm("VmRSS:")
    start = time.monotonic()
    with old.open("rb") as s, patch.open("rb") as p, out.open("wb") as o:
        DeltaDecoder(s, p).apply(o.write)
        o.flush()
        os.fsync(o.fileno())
    print(
        json.dumps(
            {"seconds": time.monotonic() - start, "rss_before": before, "hwm": _vm("VmHWM:")}
        )
    )


def plain_copy(src: Path, dst: Path) -> None:
    before = _vm("VmRSS:")
    start = time.monotonic()
    h = hashlib.sha256()
    with src.open("rb") as s, dst.open("wb") as d:
        while chunk := s.read(1 << 20):
            h.update(chunk)
            d.write(chunk)
        d.flush()
        os.fsync(d.fileno())
    print(
        json.dumps(
            {"seconds": time.monotonic() - start, "rss_before": before, "hwm": _vm("VmHWM:")}
        )
    )


def compressed_sizes(new: Path, work: Path) -> dict[str, int]:
    z, x = work / "full.zst", work / "full.xz"
    subprocess.run(
        ["zstd", "-q", "-f", "--ultra", "-22", "--long=31", str(new), "-o", str(z)], check=True
    )
    subprocess.run(["xz", "-9e", "-k", "-c", "-T1", str(new)], check=True, stdout=x.open("wb"))
    return {"zstd_full": z.stat().st_size, "xz_full": x.stat().st_size}


def bench_pair(pair: Pair, work: Path, tools: list[str] = TOOLS) -> dict[str, Any]:
    old, new = Path(pair.old), Path(pair.new)
    want = pair.new_sha256
    row: dict[str, Any] = {"pair": pair.name, "kind": pair.kind, "new_size": pair.new_size}
    row.update(compressed_sizes(new, work))
    for tool in tools:
        patch, out = work / f"{tool}.patch", work / f"{tool}.out"
        gen_s, gen_rss, stdout = run_measured(create_cmd(tool, old, new, patch))
        app_s, app_rss, _ = run_measured(apply_cmd(tool, old, patch, out))
        ok = hashlib.sha256(out.read_bytes()).hexdigest() == want
        row[tool] = {
            "size": patch.stat().st_size,
            "gen_s": round(gen_s, 2),
            "gen_rss_mib": round(gen_rss, 1),
            "apply_s": round(app_s, 3),
            "apply_rss_mib": round(app_rss, 1),
            "roundtrip": ok,
        }
        if tool == "ours":
            algorithm, _, matcher = stdout.strip().partition(" ")
            row[tool]["algorithm"], row[tool]["matcher"] = algorithm, matcher
        print(f"  {pair.name} {tool}: {row[tool]}", file=sys.stderr, flush=True)
        out.unlink()
    return row


def image_pair(corpus_rootfs: Pair, work: Path, size: int = 512 << 20) -> tuple[Path, Path]:
    rng = random.Random(14)
    old_fs, new_fs = Path(corpus_rootfs.old).read_bytes(), Path(corpus_rootfs.new).read_bytes()
    need = size - min(len(old_fs), len(new_fs))
    filler = b"".join(rng.randbytes(min(64 << 20, need - at)) for at in range(0, need, 64 << 20))
    old, new = work / "image-old", work / "image-new"
    for path, fs in ((old, old_fs), (new, new_fs)):
        with path.open("wb") as f:
            f.write(fs)
            f.write(filler[: size - len(fs)])
    return old, new


def bench_image(corpus_rootfs: Pair, work: Path) -> dict[str, Any]:
    old, new = image_pair(corpus_rootfs, work)
    patch, out = work / "image.patch", work / "image.out"
    gen_s, gen_rss, stdout = run_measured(create_cmd("ours", old, new, patch))
    runs = []
    for _ in range(3):
        _, _, copy_out = run_measured([PY, THIS, "--child", "copy", "-", str(new), "-", str(out)])
        _, _, apply_out = run_measured(apply_cmd("ours", old, patch, out))
        runs.append({"copy": json.loads(copy_out), "apply": json.loads(apply_out)})
    ok = (
        hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(new.read_bytes()).hexdigest()
    )
    sizes = compressed_sizes(new, work)
    for p in (old, new, out):
        p.unlink()
    return {
        "image_size": 512 << 20,
        "patch_size": patch.stat().st_size,
        "algorithm": stdout.strip().partition(" ")[0],
        "gen_s": round(gen_s, 1),
        "gen_rss_mib": round(gen_rss, 1),
        "roundtrip": ok,
        "runs": runs,
        **sizes,
    }


def goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    exe = [r for r in rows if r["kind"] == "executable"]
    present = [t for t in TOOLS if all(t in r for r in exe)]
    means = {t: sum(r[t]["size"] for r in exe) / len(exe) for t in present}
    if not any(t in present for t in OPEN_TOOLS):
        return {"mean_sizes": means}  # no open tool measured: nothing to compare with
    best = min((t for t in OPEN_TOOLS if t in present), key=lambda t: means[t])
    over_zstd = [r["pair"] for r in rows if r["ours"]["size"] > r["zstd_full"]]
    return {
        "mean_sizes": means,
        "best_open_tool": best,
        "ratio": means["ours"] / means[best],
        "met": means["ours"] <= 0.9 * means[best] and not over_zstd,
        "ours_larger_than_zstd_full": over_zstd,
    }


def agent_apply(size_mib: int, window_mib: int, work: Path) -> dict[str, Any]:
    """``bench/delta_apply.py``'s measurement (the real agent applying a delta) in this run."""
    import delta_apply

    window = min(window_mib, max(1, size_mib // 4))
    result = delta_apply.measure(work, size_mib << 20, window << 20)
    return {
        **result,
        "rss_goal_met": result["rss_growth_mib"] < 32,
        "throughput_goal_met": result["apply_ratio_to_copy"] >= 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=5, metavar=("ACTION", "TOOL", "A", "B", "C"))
    parser.add_argument("--pairs", default="")
    parser.add_argument("--no-image", action="store_true")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help="comma-separated subset (ours must be in it)"
    )
    parser.add_argument("--executables", action="store_true", help="only the executable pairs")
    parser.add_argument("--apply-mib", type=int, default=512, help="agent apply image (0: skip)")
    parser.add_argument("--apply-window-mib", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("bench/results/delta_bench.json"))
    args = parser.parse_args()
    if args.child:
        action, tool, a, b, c = args.child
        if action == "create":
            child_create(tool, Path(a), Path(b), Path(c))
        elif action == "apply":
            child_apply(tool, Path(a), Path(b), Path(c))
        else:
            plain_copy(Path(b), Path(c))
        return
    pairs = load_pairs()
    if args.pairs:
        pairs = [p for p in pairs if p.name in args.pairs.split(",")]
    if args.executables:
        pairs = [p for p in pairs if p.kind == "executable"]
    tools = [t for t in TOOLS if t in args.tools.split(",")]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "pairs": [],
    }
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent / "cache") as tmp:
        for pair in pairs:
            result["pairs"].append(bench_pair(pair, Path(tmp), tools))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")  # partial results survive
        if not args.no_image:
            rootfs = next(p for p in load_pairs() if p.name == "rootfs-tar")
            result["image"] = bench_image(rootfs, Path(tmp))
        if args.apply_mib:
            (Path(tmp) / "agent").mkdir()
            result["agent_apply"] = agent_apply(
                args.apply_mib, args.apply_window_mib, Path(tmp) / "agent"
            )
    if any(r["kind"] == "executable" for r in result["pairs"]):
        result["goal"] = goal(result["pairs"])
    result["load_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("goal", {}), indent=2))


if __name__ == "__main__":
    main()
