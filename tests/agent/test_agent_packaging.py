"""Packaging the agent: ``pip install otaguard`` carries none of the server's packages (they are
the ``[server]`` extra), the agent's commands run without them while ``otaguard server`` says
to install ``otaguard[server]``, and ``scripts/build-agent-deb.sh`` builds a Debian package
with the command, the units and the config, which is unpacked here and run."""

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


def unpack(deb: Path, root: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=60)
    control = subprocess.run(
        ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Package: otaguard-agent" in control
    assert f"Depends: python{sys.version_info[0]}.{sys.version_info[1]}" in control
    for unit in ("otaguard-agent.service", "otaguard-confirm.service"):
        assert (root / "lib/systemd/system" / unit).read_text() == (
            REPO / "packaging" / unit
        ).read_text()
    assert (root / "etc/otaguard/agent.toml").stat().st_mode & 0o777 == 0o640
    assert (root / "var/lib/otaguard").stat().st_mode & 0o777 == 0o700
    wrapper = (root / "usr/bin/otaguard").read_text()
    assert "/usr/lib/otaguard/python" in wrapper
    assert (root / "usr/bin/otaguard").stat().st_mode & 0o111


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


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_deb_layout_and_command(tmp_path: Path) -> None:
    """Fast variant: the package without its dependencies (the test's own ones supply them)."""
    deb = build_deb(tmp_path / "dist", deps=False)
    root = tmp_path / "root"
    unpack(deb, root)
    assert (root / "usr/lib/otaguard/python/otaguard/agent/agent.py").is_file()
    site = ":" + ":".join(p for p in sys.path if p.endswith("site-packages"))
    out = run_from(root, "agent", "--help", extra_path=site)
    assert out.returncode == 0, out.stderr
    assert "confirm" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")
def test_deb_is_self_contained_and_serverless(tmp_path: Path) -> None:
    deb = build_deb(tmp_path / "dist", deps=True)
    root = tmp_path / "root"
    unpack(deb, root)
    lib = root / "usr/lib/otaguard/python"
    present = {p.name.lower() for p in lib.iterdir()}
    for name in ("fastapi", "sqlalchemy", "uvicorn", "alembic", "argon2", "psycopg"):
        assert name not in present
    assert {"cryptography", "tuf", "httpx", "zstandard"} <= present
    out = run_from(root, "agent", "status", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2, out.stderr
    assert "cannot read agent config" in out.stderr
