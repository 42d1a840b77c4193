"""Render (and merge) ``bench/delta_bench.py`` results as the markdown of docs/BENCHMARKS.md.

Several result files of the same code and corpus (pairs benched by processes started together)
merge into one; the goal is recomputed over all executable pairs.

Usage: ``.venv/bin/python bench/delta_report.py RESULT.json [MORE.json ...] [--out
bench/results/delta_bench.json]``; prints the markdown.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delta_bench import OPEN_TOOLS, TOOLS, compressed_sizes, goal
from delta_corpus import MANIFEST

NAMES = {"zstd": "zstd --patch-from", "hdiffpatch": "HDiffPatch", "ours": "**ours**"}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    order = [p["name"] for p in json.loads(MANIFEST.read_text())]
    pairs = sorted((p for r in results for p in r["pairs"]), key=lambda p: order.index(p["pair"]))
    merged: dict[str, Any] = {
        "dates": sorted({r["date"] for r in results}),
        "python": results[0]["python"],
        "load": [r[k] for r in results for k in ("load_before", "load_after") if r[k]],
        "pairs": pairs,
        "goal": goal(pairs),
    }
    for r in results:
        for key in ("image", "agent_apply"):
            if key in r:
                merged[key] = r[key]
    return merged


def from_log(path: Path) -> dict[str, Any]:
    """Rows from a bench process's progress lines (one per pair and tool), for a process that
    did not get to write its JSON; the full-image baselines are measured here, same commands."""
    corpus = {p["name"]: p for p in json.loads(MANIFEST.read_text())}
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^  (\S+) (\w+): (\{.*\})$", line)
        if m and m.group(1) in corpus:
            pair = corpus[m.group(1)]
            row = rows.setdefault(
                pair["name"],
                {"pair": pair["name"], "kind": pair["kind"], "new_size": pair["new_size"]},
            )
            row[m.group(2)] = ast.literal_eval(m.group(3))
    complete = [r for r in rows.values() if all(t in r for t in TOOLS)]
    with tempfile.TemporaryDirectory() as tmp:
        for r in complete:
            r.update(compressed_sizes(Path(corpus[r["pair"]]["new"]), Path(tmp)))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    result = {
        "date": when,
        "python": "3.11.7",
        "load_before": 0.0,
        "load_after": 0.0,
        "pairs": complete,
    }
    path.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f}"


def corpus_table() -> list[str]:
    lines = [
        "| pair | kind | old → new bytes | packages (registry: name version, sha256 of the file served) |",
        "|---|---|---|---|",
    ]
    for p in json.loads(MANIFEST.read_text()):
        srcs = "; ".join(
            f"{s['registry']}: {s['name']} {s['version']} `{s['sha256'][:12]}…`"
            for s in p["sources"]
        )
        lines.append(
            f"| {p['name']} | {p['kind']} | {p['old_size']:,} → {p['new_size']:,} | {srcs} |"
        )
    return lines


def size_table(m: dict[str, Any]) -> list[str]:
    head = (
        "| pair | new | zstd -22 full | xz -9e full | "
        + " | ".join(NAMES.get(t, t) for t in TOOLS)
        + " | ours ÷ best open tool that round-tripped |"
    )
    lines = [head, "|" + "---|" * (5 + len(TOOLS))]
    for r in m["pairs"]:
        best = min(r[t]["size"] for t in OPEN_TOOLS if r[t]["roundtrip"])
        cells = [_kib(r[t]["size"]) + ("" if r[t]["roundtrip"] else " (FAILED)") for t in TOOLS]
        if r["ours"].get("algorithm") == "FULL":
            cells[-1] += " (full)"
        lines.append(
            f"| {r['pair']} ({r['kind']}) | {_kib(r['new_size'])} | {_kib(r['zstd_full'])} | {_kib(r['xz_full'])} | "
            + " | ".join(cells)
            + f" | {r['ours']['size'] / best:.3f} |"
        )
    g = m["goal"]
    lines.append(
        "| **mean, executable pairs** | | | | "
        + " | ".join(_kib(g["mean_sizes"][t]) for t in TOOLS)
        + f" | **{g['ratio']:.3f}** vs {g['best_open_tool']} |"
    )
    return lines


def cost_table(m: dict[str, Any]) -> list[str]:
    lines = [
        "| tool | generation: total s, peak RSS MiB (max) | apply: total s, peak RSS MiB (max) |",
        "|---|---|---|",
    ]
    for t in TOOLS:
        rows = [r[t] for r in m["pairs"]]
        lines.append(
            f"| {NAMES.get(t, t)} | {sum(x['gen_s'] for x in rows):.1f} s, {max(x['gen_rss_mib'] for x in rows):.0f} | "
            f"{sum(x['apply_s'] for x in rows):.2f} s, {max(x['apply_rss_mib'] for x in rows):.0f} |"
        )
    return lines


def image_lines(m: dict[str, Any]) -> list[str]:
    im = m.get("image")
    if not im:
        return ["(image pair not measured in this run)"]
    mib = im["image_size"] / (1 << 20)
    apply_rates = [mib / r["apply"]["seconds"] for r in im["runs"]]
    copy_rates = [mib / r["copy"]["seconds"] for r in im["runs"]]
    ratios = [a / c for a, c in zip(apply_rates, copy_rates, strict=True)]
    growth = [r["apply"]["hwm"] - r["apply"]["rss_before"] for r in im["runs"]]
    return [
        f"- patch {_kib(im['patch_size'])} KiB ({im['algorithm'].lower()}) for a {mib:.0f} MiB image; "
        f"zstd -22 full image {_kib(im['zstd_full'])} KiB, xz -9e {_kib(im['xz_full'])} KiB; "
        f"generation {im['gen_s']} s, {im['gen_rss_mib']:.0f} MiB peak; rebuilt image verified: {im['roundtrip']}",
        f"- apply {statistics.median(apply_rates):.0f} MiB/s (runs {', '.join(f'{x:.0f}' for x in apply_rates)}) vs plain "
        f"sha256 + write + fsync copy {statistics.median(copy_rates):.0f} MiB/s (runs {', '.join(f'{x:.0f}' for x in copy_rates)}): "
        f"**ratio {statistics.median(ratios):.2f}** (median of paired runs; goal ≥ 0.5)",
        f"- peak RSS growth during apply (VmHWM - RSS before): **{max(growth):.1f} MiB** at most "
        f"(runs {', '.join(f'{x:.1f}' for x in growth)}; goal < 32 MiB)",
    ]


def agent_apply_lines(m: dict[str, Any]) -> list[str]:
    """``delta_bench.py --apply-mib``: the real agent installing an image from a delta."""
    a = m.get("agent_apply")
    if not a:
        return ["(agent apply not measured in this run: `--apply-mib 0`)"]
    return [
        f"- {a['image_mib']:.0f} MiB image, {a['window_mib']} MiB changed window; patch "
        f"{_kib(a['patch_bytes'])} KiB in {a['segments']} segments, generated in {a['encode_s']} s",
        f"- apply (patch fetch + rebuild into the inactive slot) {a['apply_s']} s = "
        f"{a['apply_mib_s']} MiB/s vs plain sha256 + write + fsync copy {a['copy_mib_s']} MiB/s: "
        f"**ratio {a['apply_ratio_to_copy']:.2f}** (goal ≥ 0.5: "
        f"{'met' if a['throughput_goal_met'] else '**not met**'}); read-back verify {a['verify_s']} s",
        f"- agent peak RSS {a['agent_delta_peak_rss_mib']} MiB vs {a['agent_idle_peak_rss_mib']} MiB "
        f"idle: **growth {a['rss_growth_mib']} MiB** (goal < 32 MiB: "
        f"{'met' if a['rss_goal_met'] else '**not met**'}); check to accept {a['check_to_accept_s']} s",
    ]


def render(m: dict[str, Any]) -> str:
    g = m["goal"]
    verdict = "met" if g["met"] else "**not met**"
    out = [
        f"Run {', '.join(m['dates'])}, Python {m['python']}, 2 vCPUs shared with other jobs (load average {min(m['load'] or [0]):.1f}-{max(m['load'] or [0]):.1f}).",
        "",
        "Corpus (`bench/results/delta_corpus.json` has every sha256 in full):",
        "",
        *corpus_table(),
        "",
        "Patch sizes in KiB (every patch applied and compared with the new file's sha256):",
        "",
        *size_table(m),
        "",
        f"Goal (mean over executable pairs <= 0.9 x best single open tool, and never above the zstd-compressed image): {verdict} — "
        f"ratio {g['ratio']:.3f} against {g['best_open_tool']}; pairs where ours exceeds zstd full: {g['ours_larger_than_zstd_full'] or 'none'}.",
        "",
        "Cost over all pairs (each step its own process; peak RSS by GNU time):",
        "",
        *cost_table(m),
        "",
        "Device apply, 512 MiB image (rootfs tar + 472 MiB unchanged data):",
        "",
        *image_lines(m),
        "",
        "Device apply through the real agent (`otaguard agent run --once`, real server; "
        "`bench/delta_apply.py`, run by `delta_bench.py --apply-mib`):",
        "",
        *agent_apply_lines(m),
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    merged = merge(
        [json.loads(p.read_text()) if p.suffix == ".json" else from_log(p) for p in args.results]
    )
    if args.out:
        args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(render(merged))


if __name__ == "__main__":
    main()
