"""OTAGuard device package."""
