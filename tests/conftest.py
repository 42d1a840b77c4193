"""Shared fixtures: a running demo world (server over TLS on loopback, maker repo, fleet)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otaguard.demo import Demo

# The QEMU board, built once per session and shared by every tests/test_qemu_*.py module.
pytest_plugins = ["qemu.fixtures"]


@pytest.fixture
def demo_world(tmp_path: Path) -> Iterator[Demo]:
    """Server up, repository initialised with root signed; no releases, no devices yet."""
    d = Demo(tmp_path / "data", devices=4, port=0, payload_size=64 * 1024, workers=4)
    d.start_server()
    d.setup_repository()
    try:
        yield d
    finally:
        d.close()


_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def report_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a measured figure; it is printed in pytest's terminal summary."""
    figures = request.config.stash.setdefault(_FIGURES, [])

    def add(line: str) -> None:
        print(line)
        figures.append(line)

    return add


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, [])
    if figures:
        terminalreporter.write_sep("-", "figures measured by the tests")
        for line in figures:
            terminalreporter.write_line(line)
