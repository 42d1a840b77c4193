"""OTAGuard server package."""
