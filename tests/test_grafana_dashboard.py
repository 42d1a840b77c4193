"""The shipped Grafana dashboard queries only metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from otaguard.server.metrics import ServerMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "packaging" / "grafana" / "otaguard-rollouts.json"


def test_every_queried_metric_exists() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\botaguard_[a-z_]+", e)}
    metrics = ServerMetrics()
    metrics.rollout_targets.labels("1", "a", "pending").set(0)
    exported = {s.name for fam in metrics.registry.collect() for s in fam.samples}
    for family in metrics.registry.collect():  # labelled families have no samples yet
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
    assert names
    missing = names - exported
    assert not missing, missing
