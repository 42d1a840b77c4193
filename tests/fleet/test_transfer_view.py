"""The fleet bytes view's text (``fleet/transfer_view.py``), shared by the CLI and console."""

from __future__ import annotations

from otaguard.fleet.transfer_view import byte_size, transfer_lines


def test_byte_sizes_in_binary_units() -> None:
    assert byte_size(0) == "0 B"
    assert byte_size(1023) == "1023 B"
    assert byte_size(1024) == "1.00 KiB"
    assert byte_size(1536 * 1024) == "1.50 MiB"
    assert byte_size(50 << 20) == "50.0 MiB"
    assert byte_size(700 << 30) == "700 GiB"
    assert byte_size(3 << 40) == "3.00 TiB"


def test_transfer_lines_name_every_figure() -> None:
    t = {
        "bytes_sent": 3 << 20,
        "delta_bytes": 1 << 20,
        "full_bytes": 8 << 20,
        "saved_bytes": 5 << 20,
        "devices_served": 4,
        "devices_delta": 2,
    }
    lines = dict(transfer_lines(t))
    assert lines["Bytes sent"] == f"3.00 MiB ({3 << 20} B; deltas 1.00 MiB)"
    assert lines["Full-image bytes"].startswith(f"8.00 MiB ({8 << 20} B)")
    assert lines["Saved"] == f"5.00 MiB ({5 << 20} B) (62.5% of the full images)"
    assert lines["Devices served"] == "4, 2 of them by a delta"


def test_nothing_served_is_said_once() -> None:
    for t in (None, {}, {"devices_served": 0, "bytes_sent": 0}):
        assert transfer_lines(t) == [
            ("Bytes sent", "nothing served to the deployment's devices yet")
        ]
