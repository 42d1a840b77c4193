"""Uptane's director, as OTAGuard builds it: per-device assignments signed by the server's
online director key (``assignment``) and the version manifests devices sign (``manifest``).

Both sides use it: the server signs assignments and verifies manifests, the device verifies
assignments and signs manifests. Pure signing and checking over bytes; imports ``crypto``,
``repo`` (target shapes) and ``errors``, no I/O.
"""
