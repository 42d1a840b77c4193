"""OTAGuard sim package."""
