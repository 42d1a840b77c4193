"""Run one fuzz target: ``python tests/fuzz/run.py TARGET [--runs N] [--seconds S]``.

With atheris (libFuzzer for Python; coverage-guided over ``otaguard``, ``tuf`` and
``securesystemslib``), libFuzzer itself enforces the per-input time (``-timeout``) and the RSS
bound (``-rss_limit_mb``) and stops at ``-runs``; an exception outside the target's ``expected``
errors is a crash, saved under ``--artifacts`` and reported with a non-zero exit. Without
atheris, hypothesis generates the inputs (not coverage-guided) with the same checks done here.
The last line printed is a JSON summary: target, engine, executions, seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("--runs", type=int, default=0, help="executions (0: until --seconds)")
    p.add_argument("--seconds", type=int, default=0, help="time bound (0: none)")
    p.add_argument("--timeout", type=int, default=5, help="seconds allowed per input")
    p.add_argument("--rss-mb", type=int, default=1024, help="RSS bound of the process")
    p.add_argument("--artifacts", type=Path, default=Path("."))
    p.add_argument("--engine", choices=["atheris", "hypothesis"], default=None)
    return p.parse_args(argv)


def _atheris(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["otaguard", "tuf", "targets"]):
        from targets import TARGETS
    target = TARGETS[args.target]
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)

    def one(data: bytes) -> None:
        with contextlib.suppress(target.expected):
            target.run(data)

    flags = [f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_mb}", "-print_final_stats=1"]
    flags += [f"-artifact_prefix={args.artifacts}/", f"-max_len={target.max_len}"]
    flags += [f"-runs={args.runs}"] if args.runs else []
    flags += [f"-max_total_time={args.seconds}"] if args.seconds else []
    atheris.Setup([sys.argv[0], *flags, str(corpus)], one)
    start = time.monotonic()
    try:
        atheris.Fuzz()
    finally:  # libFuzzer exits the process; this runs only when it returns normally
        _summary(args, "atheris", args.runs, time.monotonic() - start)


def _hypothesis(args: argparse.Namespace) -> None:
    from targets import TARGETS

    start = time.monotonic()
    count = hypothesis_run(
        TARGETS[args.target],
        runs=args.runs,
        seconds=args.seconds,
        timeout=args.timeout,
        rss_mb=args.rss_mb,
    )
    _summary(args, "hypothesis", count, time.monotonic() - start)


def hypothesis_run(target: Any, *, runs: int, seconds: float, timeout: float, rss_mb: int) -> int:
    """Run ``target`` on its seeds, then on hypothesis-made inputs, until ``runs`` inputs or
    ``seconds`` passed (0: no bound); assert per-input time and peak RSS; the executions."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    count = 0
    deadline = time.monotonic() + seconds if seconds else float("inf")

    def one(data: bytes) -> None:
        nonlocal count
        if time.monotonic() > deadline:
            return
        count += 1
        began = time.monotonic()
        with contextlib.suppress(target.expected):
            target.run(data)
        assert time.monotonic() - began < timeout, f"input took over {timeout} s"
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        assert peak_mb < rss_mb, f"peak RSS {peak_mb} MiB over {rss_mb} MiB"

    for seed in target.seeds():
        one(seed)
    check = settings(
        max_examples=runs or 10**9,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(given(st.binary(max_size=target.max_len))(one))
    check()
    return count


def _summary(args: argparse.Namespace, engine: str, runs: int, seconds: float) -> None:
    result: dict[str, Any] = {"target": args.target, "engine": engine, "executions": runs}
    result["seconds"] = round(seconds, 1)
    print(json.dumps(result), flush=True)


def main(argv: list[str]) -> None:
    args = _args(argv)
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    (_atheris if engine == "atheris" else _hypothesis)(args)


if __name__ == "__main__":
    main(sys.argv[1:])
