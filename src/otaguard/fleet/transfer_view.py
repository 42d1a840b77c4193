"""The fleet bytes view as operators read it: one line per figure, the same words in the CLI
(``otaguard mgmt deployments show``) and the web console's deployment page.

The server counts bytes served per deployment (``store/transfers.py``: bytes sent, what full
images would have needed, devices served and how many by a delta); this module only turns
those counts into text (byte sizes in binary units, the share saved). Pure: a mapping in,
(label, text) pairs out.
"""

from __future__ import annotations

from collections.abc import Mapping

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def byte_size(n: int) -> str:
    """``n`` bytes in binary units, three significant figures (``812 B``, ``1.50 MiB``)."""
    if n < 1024:
        return f"{n} B"
    value = float(n) / 1024
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"


def transfer_lines(transfer: Mapping[str, int] | None) -> list[tuple[str, str]]:
    """(label, text) for each figure of a deployment's ``transfer`` block; a single line
    when nothing has been served yet."""
    t = transfer or {}
    served = int(t.get("devices_served", 0))
    if served == 0:
        return [("Bytes sent", "nothing served to the deployment's devices yet")]
    sent, full = int(t.get("bytes_sent", 0)), int(t.get("full_bytes", 0))
    delta_bytes, saved = int(t.get("delta_bytes", 0)), int(t.get("saved_bytes", 0))
    share = f" ({100 * saved / full:.1f}% of the full images)" if full else ""
    by_delta = int(t.get("devices_delta", 0))
    return [
        ("Bytes sent", f"{byte_size(sent)} ({sent} B; deltas {byte_size(delta_bytes)})"),
        ("Full-image bytes", f"{byte_size(full)} ({full} B) had every device taken the image"),
        ("Saved", f"{byte_size(saved)} ({saved} B){share}"),
        ("Devices served", f"{served}, {by_delta} of them by a delta"),
    ]
