"""OTAGuard repo package."""
