"""OTAGuard agent package."""
