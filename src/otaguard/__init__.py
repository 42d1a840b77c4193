"""OTAGuard: secure over-the-air updates for IoT fleets."""

__version__ = "0.1.0"
