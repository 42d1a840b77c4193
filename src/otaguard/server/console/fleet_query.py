"""The one grouped query behind the overview's counts (I/O; the rules are in ``fleet.py``).

The store's own methods list devices page by page (each device with its tags), which is right
for the device list but would cost a query per device to count a fleet of 10,000. This read
asks the database to count by version, hardware, state and contact bucket in one statement.
Hook: it belongs in the store as ``Store.fleet_counts`` once the store's modules settle; it
only reads, through ``Store.session(write=False)``.
"""

from __future__ import annotations

from sqlalchemy import case, func, select

from otaguard.server.console.fleet import Contact, ContactCuts, GroupRow
from otaguard.store.database import Store
from otaguard.store.models import Device


def fleet_rows(store: Store, cuts: ContactCuts) -> list[GroupRow]:
    contact = case(
        (Device.last_seen >= cuts.online, Contact.ONLINE.value),
        (Device.last_seen >= cuts.stale, Contact.STALE.value),
        else_=Contact.SILENT.value,
    ).label("contact")
    query = select(
        Device.current_version, Device.hardware, Device.update_state, contact, func.count()
    ).group_by(Device.current_version, Device.hardware, Device.update_state, contact)
    with store.session(write=False) as s:
        return [
            GroupRow(version, hardware, state, str(bucket), int(n))
            for version, hardware, state, bucket, n in s.execute(query)
        ]
