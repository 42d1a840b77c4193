"""Mix-and-match attack: the attacker combines metadata from different times: the current
timestamp and snapshot with an older, validly signed targets file that still lists release
1.5.0, withdrawn by the maker since, served under the current targets file's name; then it
deploys 1.5.0.

Stopped by: snapshot pins the version of every targets file and the client requires the
targets it gets to carry exactly that version (``Expected targets vN, got vM``). With that
pinning switched off (the trusted snapshot's entry set to whatever version arrives), the
device installs the withdrawn release: ``test_..._without_version_pinning`` shows this test
then fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from tuf.api.metadata import Metadata
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet

from kit.attacks import Scene, assert_refused


def attack(scene: Scene) -> None:
    withdrawn = scene.release("1.5.0")
    repo = scene.ctx.repo
    old_targets = repo.store.get(f"{repo.targets().signed.version}.targets.json")
    scene.withdraw(withdrawn)
    current = repo.targets().signed.version
    repo.store.put(f"{current}.targets.json", old_targets, replace=True)  # the mix
    since = len(scene.events())
    scene.deploy(withdrawn)
    scene.dev.run_until_settled()
    assert_refused(scene, since=since, reason=f"Expected targets v{current}")


def test_old_targets_with_new_snapshot_is_refused(scene: Scene) -> None:
    attack(scene)


def test_attack_succeeds_without_version_pinning(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TrustedMetadataSet.update_delegated_targets

    def unpinned(self: Any, data: bytes, role_name: str, delegator_name: str) -> Any:
        served = Metadata.from_bytes(data).signed.version
        self.snapshot.meta[f"{role_name}.json"].version = served
        return original(self, data, role_name, delegator_name)

    monkeypatch.setattr(TrustedMetadataSet, "update_delegated_targets", unpinned)
    with pytest.raises(AssertionError, match="left its image"):
        attack(scene)
    assert scene.dev.version == "1.5.0"
