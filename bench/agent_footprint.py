"""The agent's installed footprint: what ``pip install otaguard`` puts on a device (MiB on disk,
packages) against what it installed before the server moved to the ``[server]`` extra
(``otaguard[server]``), from the installed distributions' RECORD files in this environment;
and the agent process's peak RSS at start (``otaguard agent status``), run with the server's
packages unimportable, against the same process with the server stack imported.

    .venv/bin/python bench/agent_footprint.py [--write]   (--write: docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
SERVER = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "argon2", "psycopg",
          "prometheus_client", "multipart", "python_multipart", "httptools"]  # fmt: skip


def closure(root: str, extras: set[str]) -> set[str]:
    """Distribution names ``root`` (with ``extras``) needs, itself included."""
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [(root, extras)]
    while todo:
        name, want = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen and not want:
            continue
        seen.add(key)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            envs = [{"extra": e} for e in want] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return seen


def size(names: set[str]) -> int:
    total = 0
    for dist in md.distributions():
        if dist.metadata["Name"].lower().replace("_", "-") not in names:
            continue
        for f in dist.files or []:
            path = Path(str(dist.locate_file(f)))
            if path.is_file() and "__pycache__" not in path.parts:
                total += path.stat().st_size
    return total


def peak_rss_kib(block_server: bool, config: Path) -> int:
    block = f"import sys\nfor m in {SERVER!r}: sys.modules[m] = None\n" if block_server else ""
    load = "" if block_server else "import otaguard.server.app\n"
    code = (
        block + load + "import sys\nfrom otaguard.cli.main import main\n"
        "sys.argv = ['otaguard', 'agent', 'status', '--config', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True,
                         text=True, check=True, timeout=120)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    device = closure("otaguard", set())
    full = closure("otaguard", {"server"})
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text("[agent]\n")
        rss_agent = min(peak_rss_kib(True, config) for _ in range(3))
        rss_full = min(peak_rss_kib(False, config) for _ in range(3))
    lines = [
        "## Agent footprint (issue 15: the server is the `[server]` extra)",
        "",
        "Command: `.venv/bin/python bench/agent_footprint.py --write` (installed sizes from the",
        "distributions' RECORD files in this environment, bytecode caches excluded; peak RSS of",
        "`otaguard agent status`, best of 3).",
        "",
        "| | packages | MiB on disk | peak RSS (MiB) |",
        "|---|---|---|---|",
        f"| `pip install otaguard` (device, now) | {len(device)} | {size(device) / MIB:.1f} "
        f"| {rss_agent / 1024:.1f} |",
        f"| before: the same with the server's packages (`otaguard[server]`) | {len(full)} "
        f"| {size(full) / MIB:.1f} | {rss_full / 1024:.1f} (server stack imported) |",
        f"| ratio | {len(device) / len(full):.2f} | {size(device) / size(full):.2f} "
        f"| {rss_agent / rss_full:.2f} |",
        "",
        "The agent imported no server module before either (its imports were lazy), so its RSS",
        "is what it was; the RSS row shows what the server stack would add to the process. The",
        "Debian package (`scripts/build-agent-deb.sh`) carries the device set: about 70 MiB",
        "unpacked, most of it `cryptography`'s and `pydantic-core`'s compiled code.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        bench = REPO / "docs" / "BENCHMARKS.md"
        old = bench.read_text()
        old = re.sub(r"## Agent footprint \(issue 15.*?(?=\n## |\Z)", "", old, flags=re.S)
        bench.write_text(old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
