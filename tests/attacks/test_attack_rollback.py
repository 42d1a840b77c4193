"""Rollback attack: the maker withdrew release 1.5.0 (a new targets version without it) and the
device has refreshed since (it does so before every install). The attacker restores the
server's metadata to the day 1.5.0 was live (the old, validly signed timestamp, snapshot and
targets) and deploys 1.5.0.

Stopped by: TUF's version rules against the metadata the device trusted before (a new
timestamp's version must be >= the trusted one; the same for snapshot and targets), which rely
on the agent persisting its trusted metadata between refreshes. With that memory switched off
(the device's cached timestamp/snapshot/targets deleted, as if it kept nothing), the old
metadata verifies and the device installs the withdrawn release: ``test_..._without_...``
shows this test then fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kit.attacks import Scene, assert_refused


def attack(scene: Scene, before_attack: Callable[[], None] = lambda: None) -> None:
    withdrawn = scene.release("1.5.0")
    captured = scene.ctx.repo.store.get("timestamp.json")  # the attacker keeps a copy
    scene.withdraw(withdrawn)
    assert scene.ctx.repo.find_target(withdrawn) is None
    assert scene.dev.agent is not None
    scene.dev.agent.trusted_target(scene.v1_name)  # a refresh, as before every install
    before_attack()
    scene.ctx.repo.store.put("timestamp.json", captured, replace=True)  # roll the server back
    since = len(scene.events())
    scene.deploy(withdrawn)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason="must be >=")


def test_replayed_older_metadata_is_refused(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_trusted_metadata_versions(scene: Scene) -> None:
    def forget() -> None:
        for name in ("timestamp.json", "snapshot.json", "targets.json"):
            (scene.dev.config.tuf_dir / name).unlink()

    with pytest.raises(AssertionError, match="left its image"):
        attack(scene, forget)
    assert scene.dev.version == "1.5.0"
