"""The update agent: runs on the device.

Pure decisions, tested without slots or HTTP: ``statemachine`` (states, transitions, what a
boot means), ``acceptance`` (whether to install an assignment and its target), ``retry``
(download budget, backoff, stream verdict), ``reporting`` (which report, which reason),
``replies`` (the server's answers, typed), ``outcome``. I/O and sequencing around them:
``core`` (devices, clients, journal, reports), ``installing`` (download to final report),
``agent`` (boot reconciliation, check-in, acceptance), with ``journal``/``journal_keeper``,
``slot_stream``, ``readback``, ``device_api``, ``trusted_repo``, ``renewal``, ``offline``,
``service``.

May import ``device``, ``net``, ``director``, ``repo`` (release metadata), ``crypto``,
``fleet`` (vocabularies), ``bundle`` (reading offline bundles), the device-side parts of
``identity`` (keys, CSR, enrollment) and ``errors``; never ``server`` or ``store``.
"""
