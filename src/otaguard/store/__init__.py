"""The server's state (server side): the database and the artifact blob store.

``database.Store`` is the entry point (``engine`` for connections, transactions and migrations;
one module per concern: ``checkin``, ``devices``, ``deployments``, ``reports``, ``releases``,
``tuf_metadata``; ``views`` for what reads return); ``base``, ``models`` and
``identity_models`` are the tables, ``schema`` all of them; ``blobs`` holds artifacts.

May import ``otaguard.errors`` and the pure ``otaguard.fleet`` rules; never the server, the
agent or the device code (the store is below them all).
"""
