"""The ``otaguard`` command, one module per audience.

Sides: ``maker_*`` run on the maker's offline workstation (keys, repository, releases);
``main`` (``server``, ``demo``, ``export-static``), ``identity`` (``user``, ``token``, ``audit``,
``ca``) run on the server host and open its database; ``agent`` and ``device_identity`` run on
the device; ``manage`` talks to a server over HTTPS as an operator. Each command imports what
it needs when it runs, so the agent's commands load no server code (and need no server extras).
The CLI may import every package; no package imports the CLI.
"""
