"""Which served bytes count for which deployment target (``store/transfers.attribute``, pure),
and the tally the download route fills."""

from __future__ import annotations

from otaguard.store.transfers import Served, TransferTally, attribute

CRED = {"d1": "h1", "d2": "h2"}
#: d1 is in deployment 5 (fw-2) and, older, 3 (fw-1); d2 only in 5
MEMBERS = {"d1": [(5, "b/fw-2.img"), (3, "b/fw-1.img")], "d2": [(5, "b/fw-2.img")]}
FILES = {
    ("b/fw-2.img", "s2"): ("b/fw-2.img", False),
    ("b/fw-1.img", "s1"): ("b/fw-1.img", False),
    ("b/fw-2.img.from-x.otadelta", "sd"): ("b/fw-2.img", True),
}


def resolve(name: str, digest: str) -> tuple[str, bool] | None:
    return FILES.get((name, digest))


def served(device: str, cred: str | None, name: str, digest: str, n: int) -> Served:
    return Served(device, cred, name, digest, n)


def test_bytes_go_to_the_newest_deployment_of_the_image_delta_counted_apart() -> None:
    got = attribute(
        [
            served("d1", "h1", "b/fw-2.img.from-x.otadelta", "sd", 100),
            served("d1", None, "b/fw-2.img", "s2", 1000),  # certificate: no credential to check
            served("d1", "h1", "b/fw-1.img", "s1", 7),  # the older deployment's image
            served("d2", "h2", "b/fw-2.img", "s2", 50),
        ],
        CRED,
        MEMBERS,
        resolve,
    )
    assert got == {(5, "d1"): (1100, 100), (3, "d1"): (7, 0), (5, "d2"): (50, 0)}


def test_bytes_that_do_not_hold_are_not_counted() -> None:
    got = attribute(
        [
            served("d1", "WRONG", "b/fw-2.img", "s2", 1000),  # a claimed id, wrong credential
            served("d9", None, "b/fw-2.img", "s2", 1000),  # unknown device
            served("d1", "h1", "b/fw-2.img", "s-other", 1000),  # name and hash do not match
            served("d2", "h2", "b/fw-1.img", "s1", 1000),  # an image d2 is not deployed
            served("d1", "h1", "b/fw-2.img", "s2", 0),
        ],
        CRED,
        MEMBERS,
        resolve,
    )
    assert got == {}
    # control: the same bytes with the right credential count
    ok = attribute([served("d1", "h1", "b/fw-2.img", "s2", 1000)], CRED, MEMBERS, resolve)
    assert ok == {(5, "d1"): (1000, 0)}


def test_tally_sums_takes_and_restores() -> None:
    tally = TransferTally()
    key = ("d1", "h1", "b/fw-2.img", "s2")
    tally.add(key, 10)
    tally.add(key, 5)
    taken = tally.take()
    assert taken == [Served(*key, 15)]
    assert tally.take() == []
    tally.restore(taken)
    tally.add(key, 1)
    assert tally.take() == [Served(*key, 16)]
