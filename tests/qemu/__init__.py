"""The QEMU board with real U-Boot (see board.py) and the harness that boots it (machine.py)."""
