"""Shared fixtures: a running demo world (server over TLS on loopback, maker repo, fleet)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otaguard.demo import Demo


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
