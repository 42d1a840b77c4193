"""OTAGuard crypto package."""
