"""The whole schema of the server's database: every table module imported, so ``metadata``
holds every table.

Alembic (``migrations/env.py``) and the schema tests compare the database with this metadata;
importing ``models`` or ``identity_models`` alone registers only that module's tables.
"""

from __future__ import annotations

from otaguard.store import group_models, identity_models, models, rollout_models
from otaguard.store.base import Base

#: every table of the server's database (fleet and identity), one set of migrations
metadata = Base.metadata

__all__ = ["Base", "group_models", "identity_models", "metadata", "models", "rollout_models"]
