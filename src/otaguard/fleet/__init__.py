"""OTAGuard fleet package."""
