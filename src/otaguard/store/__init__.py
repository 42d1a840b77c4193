"""OTAGuard store package."""
