"""Two independent checks stand between downloaded bytes and a boot: the sha256 computed while
the bytes stream into the slot, and a read-back of the whole slot before the boot env switches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otaguard.demo import Demo
from otaguard.device.slots import FileSlots


class BitRotSlots(FileSlots):
    """Flash that corrupts what it stores: the writer sees the right bytes, the flash keeps a
    flipped bit in the first chunk written to slot b."""

    @contextmanager
    def open_write(self, slot: str, offset: int) -> Iterator[Any]:
        with super().open_write(slot, offset) as w:
            real_write = w.write
            done = False

            def write(chunk: bytes) -> Any:
                nonlocal done
                if slot == "b" and not done and chunk:
                    done = True
                    chunk = bytes([chunk[0] ^ 0x01]) + chunk[1:]
                return real_write(chunk)

            w.write = write
            yield w


def _events(d: Demo, device_id: str) -> list[dict[str, Any]]:
    assert d.api is not None
    return list(d.api.device(device_id)["events"])


def test_tampered_bytes_are_caught_while_streaming(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0")
    assert d.ctx is not None
    assert d.repo is not None
    digest = d.repo.targets().signed.targets[v2_name].hashes["sha256"]
    blob = d.ctx.blobs.path(digest)
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF
    blob.write_bytes(bytes(data))
    d.provision_fleet(v1)
    d.deploy(v2_name)
    d.run()
    for dev in d.fleet:
        last = _events(d, dev.config.device_id)[-1]
        assert last["event"] == "failed"
        assert "streamed content does not match" in last["detail"]["reason"]
        assert dev.env.read()["boot_slot"] == "a"


def test_flash_corruption_is_caught_by_the_read_back(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0")
    d.devices = 2
    d.provision_fleet(v1)
    for dev in d.fleet:
        dev.slots = BitRotSlots(dev.slots.directory, dev.storage)
        dev.bootloader.slots = dev.slots
        dev.power_on()
    d.deploy(v2_name)
    runs = d.run()
    for r, dev in zip(runs, d.fleet, strict=True):
        assert (r.version_after, r.slot_after) == ("1.0.0", "a")
        events = _events(d, dev.config.device_id)
        names = [e["event"] for e in events]
        # The stream hash matched (the network delivered the signed bytes) ...
        assert "downloaded" in names
        # ... but the slot read back did not, so nothing was installed.
        assert "installed" not in names
        assert names[-1] == "failed"
        assert "slot content does not match" in events[-1]["detail"]["reason"]
        assert dev.env.read()["boot_slot"] == "a"
