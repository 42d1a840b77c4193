"""The device's hardware, as the agent sees it: runs on the device.

Boot environments in U-Boot's and GRUB's formats (``bootenv``, ``grubenv``), A/B slots on files or
block devices (``slots``), durable writes with power-cut injection (``storage``), the OTP
anti-rollback counter (``otp``); and, for tests and the demo only, a simulated bootloader and
image format (``bootloader``, ``image``). Imports only ``errors``: never the server side
(checked by tests/architecture).
"""
