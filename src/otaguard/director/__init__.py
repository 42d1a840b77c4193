"""OTAGuard director package."""
