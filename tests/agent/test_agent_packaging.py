"""Packaging the agent: ``pip install otaguard`` carries none of the server's packages (they are
the ``[server]`` extra), the agent's commands run without them while ``otaguard server`` says
to install ``otaguard[server]``, and ``scripts/build-agent-deb.sh`` builds a Debian package
with the command, the units and the config, which is installed here with ``dpkg --root`` into
an empty root (a real dpkg install: its database, the conffile, owners and modes; no chroot)
and run.

The package with its dependencies (``test_deb_is_self_contained_and_serverless``) is slow:
pip copies cryptography, tuf, httpx... into it, about a minute of a quiet 2-core machine
(docs/BENCHMARKS.md), so it runs in ``make test-slow``; ``make test`` builds it without them
(``PIP_NO_DEPS=1``, seconds) and checks the same layout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = ["fastapi", "uvicorn", "sqlalchemy", "alembic", "argon2", "psycopg",
          "prometheus_client", "multipart", "python_multipart", "httptools", "starlette"]  # fmt: skip
BLOCK = f"import sys\nfor m in {SERVER!r}: sys.modules[m] = None\n"
PY = sys.executable


def requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_device_install_has_no_server_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    device = requirement_names(project["dependencies"])
    server = requirement_names(project["optional-dependencies"]["server"])
    for name in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "argon2-cffi", "psycopg",
                 "prometheus-client", "python-multipart", "httptools"):  # fmt: skip
        assert name in server
        assert name not in device
    assert {"cryptography", "tuf", "httpx", "zstandard"} <= device


def cli(*args: str, block: bool = True) -> subprocess.CompletedProcess[str]:
    code = (BLOCK if block else "") + (
        "import sys\nfrom otaguard.cli.main import main\nsys.argv = ['otaguard', *sys.argv[1:]]\n"
        "main()\n"
    )
    return subprocess.run(
        [PY, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_agent_runs_without_the_server_packages(tmp_path: Path) -> None:
    out = cli("agent", "status", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2, out.stderr  # a config error, not an ImportError
    assert "cannot read agent config" in out.stderr
    assert "Traceback" not in out.stderr
    assert cli("agent", "--help").returncode == 0


def test_server_command_names_the_extra_when_missing(tmp_path: Path) -> None:
    out = cli("server", "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "pip install 'otaguard[server]'" in re.sub(r"\s+", " ", out.stdout + out.stderr)
    assert "Traceback" not in out.stderr


def build_deb(out: Path, *, deps: bool) -> Path:
    env = {**os.environ, "PYTHON": PY}
    if not deps:
        env["PIP_NO_DEPS"] = "1"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-agent-deb.sh"), str(out)],
        capture_output=True, text=True, timeout=900, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def install(deb: Path, root: Path) -> None:
    """``dpkg --root ROOT -i`` into an empty root with an empty dpkg database (python3.X, the
    one dependency, is the host's: ``--force-depends``), then check what dpkg installed."""
    admin = root / "var/lib/dpkg"
    for d in ("info", "updates", "triggers"):
        (admin / d).mkdir(parents=True)
    (admin / "status").touch()
    (admin / "available").touch()
    force = ["--force-depends"] + ([] if os.geteuid() == 0 else ["--force-not-root"])
    proc = subprocess.run(
        ["dpkg", f"--root={root}", *force, "--log=/dev/null", "-i", str(deb)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = dpkg_query(root, "-s")
    assert "Status: install ok installed" in status
    assert f"Depends: python{sys.version_info[0]}.{sys.version_info[1]}" in status
    assert "Conffiles:\n /etc/otaguard/agent.toml " in status  # an edited config survives
    listed = set(dpkg_query(root, "-L").split())
    units = [
        f"/lib/systemd/system/{u}" for u in ("otaguard-agent.service", "otaguard-confirm.service")
    ]
    assert {*units, "/usr/bin/otaguard", "/etc/otaguard/agent.toml", "/var/lib/otaguard"} <= listed
    for unit in units:
        assert (root / unit[1:]).read_text() == (REPO / "packaging" / Path(unit).name).read_text()
    modes = {
        "etc/otaguard/agent.toml": 0o640,  # may hold paths to keys: not world-readable
        "var/lib/otaguard": 0o700,  # the journal and the device's keys
        "usr/bin/otaguard": 0o755,
        units[0][1:]: 0o644,
        units[1][1:]: 0o644,
    }
    for path, mode in modes.items():
        st = (root / path).stat()
        assert (path, st.st_mode & 0o7777) == (path, mode)
        if os.geteuid() == 0:
            assert (path, st.st_uid, st.st_gid) == (path, 0, 0)  # not the builder's
    wrapper = (root / "usr/bin/otaguard").read_text()
    assert "PYTHONPATH=/usr/lib/otaguard/python" in wrapper


def dpkg_query(root: Path, *args: str) -> str:
    return subprocess.run(
        ["dpkg", f"--root={root}", *args, "otaguard-agent"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def run_wrapper(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed /usr/bin/otaguard itself (the host's /usr/bin/python3.X, nothing else on
    its path), with /usr/lib/otaguard/python pointed into the root it was installed in."""
    text = (root / "usr/bin/otaguard").read_text()
    local = root / "otaguard-here"
    local.write_text(
        text.replace("/usr/lib/otaguard/python", str(root / "usr/lib/otaguard/python"))
    )
    return subprocess.run(
        ["sh", str(local), *args], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)}, check=False,
    )  # fmt: skip


def run_from(root: Path, *args: str, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    """The packaged command, with its library path pointed into the unpacked tree."""
    lib = str(root / "usr/lib/otaguard/python") + extra_path
    code = (
        BLOCK
        + "from otaguard.cli.main import main\nimport sys\nsys.argv=['otaguard',*sys.argv[1:]]\nmain()\n"
    )
    return subprocess.run(
        [PY, "-S", "-c", code, *args], capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": lib, "PATH": os.environ["PATH"]}, check=False,
    )  # fmt: skip


NO_DPKG = shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None


@pytest.mark.skipif(NO_DPKG, reason="dpkg not installed")
def test_deb_layout_and_command(tmp_path: Path) -> None:
    """Fast variant: the package without its dependencies (the test's own ones supply them,
    the server's blocked)."""
    deb = build_deb(tmp_path / "dist", deps=False)
    root = tmp_path / "root"
    install(deb, root)
    assert (root / "usr/lib/otaguard/python/otaguard/agent/agent.py").is_file()
    site = ":" + ":".join(p for p in sys.path if p.endswith("site-packages"))
    out = run_from(root, "agent", "--help", extra_path=site)
    assert out.returncode == 0, out.stderr
    assert "confirm" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(NO_DPKG, reason="dpkg not installed")
def test_deb_is_self_contained_and_serverless(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "dist", deps=True)
    root = tmp_path / "root"
    install(deb, root)
    lib = root / "usr/lib/otaguard/python"
    present = {p.name.lower() for p in lib.iterdir()}
    for name in ("fastapi", "sqlalchemy", "uvicorn", "alembic", "argon2", "psycopg"):
        assert name not in present
    assert {"cryptography", "tuf", "httpx", "zstandard"} <= present
    out = run_from(root, "agent", "status", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2, out.stderr
    assert "cannot read agent config" in out.stderr
    # The installed command itself, on the host's system Python (no tuf, no fastapi on
    # Debian's python3.11 here) and what the package carries.
    system_py = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    if not Path(system_py).is_file():
        pytest.skip(f"{system_py} (the package's dependency) is not installed")
    helped = run_wrapper(root, "agent", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "confirm" in helped.stdout
    status = run_wrapper(root, "agent", "status", "--config", str(tmp_path / "none.toml"))
    assert status.returncode == 2, status.stderr
    assert "cannot read agent config" in status.stderr
    assert "Traceback" not in status.stderr
