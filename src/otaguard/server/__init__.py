"""The OTAGuard server: device API, management API and the online side of the TUF repository.

Side: runs on the server. May import ``repo`` (online rules), ``director``, ``identity``,
``store``, ``crypto``, ``fleet`` and ``errors``; never the device side (``agent``, ``device``).

Map: ``app.py`` assembles the application from ``routes/`` (one module per resource),
``state.py`` (the context handlers reach through ``app.state``), ``auth.py`` (operator and
device authentication, audit middleware), ``http_errors.py`` (errors to HTTP statuses) and
``limits.py`` (body limit); ``checkin.py`` answers the hot-path check-in ahead of the framework;
``runner.py`` serves it under uvicorn with TLS.
"""
