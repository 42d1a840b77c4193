"""The shared client-side network layer: TLS trust, the HTTP client, TUF's fetcher over it, and
the resumable, length-capped target download.

Used by the device agent (``agent/``), the maker's tools (``identity/enroll.py``,
``bundle/create.py``) and the management client (``api_client.py``): every side that talks to
an OTAGuard server as a client gets the same pinned-CA TLS context and the same download
defences from here. It runs wherever those run (device, maker workstation, operator's shell),
so it imports only the standard library, httpx, tuf and ``otaguard.errors``; never ``agent``,
``server``, ``store`` or ``identity``.
"""
