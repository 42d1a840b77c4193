"""OTAGuard cli package."""
