"""The scene every attack starts from (see ``kit.py``)."""

from __future__ import annotations

import pytest

from kit.attacks import MitmTransport, Scene
from otaguard.demo import Demo


@pytest.fixture
def scene(demo_world: Demo) -> Scene:
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    d.devices = 2
    name, image = d.release("1.0.0")
    mitm = MitmTransport(d.ctx.settings.tls.ca_cert)
    d.provision_fleet(image, http_transport=mitm)
    return Scene(d, mitm, name, image, {name: image})
