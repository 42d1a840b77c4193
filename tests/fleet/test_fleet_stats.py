"""The statistics behind rollout decisions: known values, brute-force checks, and seeded
simulations for false alarms and detection (fleet/stats.py)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.errors import PolicyError
from otaguard.fleet.stats import (
    mann_whitney_greater,
    newcombe_difference,
    rate_alarm,
    wilson_bounds,
    z_one_sided,
)

Z95_TWO_SIDED = 1.959963984540054


def test_z_one_sided_known_values() -> None:
    assert z_one_sided(0.05) == pytest.approx(1.644854, abs=1e-6)
    assert z_one_sided(0.025) == pytest.approx(Z95_TWO_SIDED, abs=1e-9)
    for bad in (0.0, 0.5, 0.7, -0.1):
        with pytest.raises(PolicyError):
            z_one_sided(bad)


def test_wilson_known_values() -> None:
    # 0 of 10: the upper bound is z^2 / (n + z^2)
    low, high = wilson_bounds(0, 10, Z95_TWO_SIDED)
    assert low == 0.0
    assert high == pytest.approx(0.27753, abs=1e-4)
    # 81 of 263 at 95 % (a commonly quoted example): 0.2553 .. 0.3662
    low, high = wilson_bounds(81, 263, Z95_TWO_SIDED)
    assert low == pytest.approx(0.2553, abs=1e-3)
    assert high == pytest.approx(0.3662, abs=1e-3)
    assert wilson_bounds(0, 0, 1.0) == (0.0, 1.0)
    with pytest.raises(PolicyError):
        wilson_bounds(3, 2, 1.0)


@given(st.integers(0, 500), st.integers(1, 500), st.floats(0.5, 4.0))
def test_wilson_brackets_the_observed_rate(events: int, trials: int, z: float) -> None:
    events = min(events, trials)
    low, high = wilson_bounds(events, trials, z)
    assert 0.0 <= low <= events / trials <= high <= 1.0


def test_newcombe_matches_the_paper() -> None:
    # Newcombe 1998, example (a): 56/70 - 48/80, method 10: 0.0524 .. 0.3339
    low, high = newcombe_difference(56, 70, 48, 80, Z95_TWO_SIDED)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)
    # example (h): 0/10 - 0/20 (no events at all): -0.1611 .. 0.2775
    low, high = newcombe_difference(0, 10, 0, 20, Z95_TWO_SIDED)
    assert low == pytest.approx(-0.1611, abs=1e-4)
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_rate_alarm_one_in_three_does_not_stop_a_large_rollout() -> None:
    # 1 failure among the first 3 devices of a 100,000-device rollout, limit 2 %
    t = rate_alarm(1, 3, limit=0.02, min_sample=1)
    assert t.judged
    assert not t.alarm
    assert t.log_likelihood_ratio == pytest.approx(2.073, abs=1e-3)
    # but 7 failures in a row is a signal, even that early
    assert rate_alarm(7, 7, limit=0.02, min_sample=1).alarm


def test_rate_alarm_min_sample_withholds_judgement() -> None:
    t = rate_alarm(10, 10, limit=0.02, min_sample=20)
    assert not t.judged
    assert not t.alarm
    assert rate_alarm(20, 20, limit=0.02, min_sample=20).alarm


def test_rate_alarm_evidence_is_readable() -> None:
    t = rate_alarm(30, 400, limit=0.02)
    ev = t.evidence()
    assert ev["events"] == 30
    assert ev["trials"] == 400
    assert ev["observed_rate"] == 0.075
    assert ev["wilson_lower"] < 0.075 < ev["wilson_upper"]
    assert t.alarm


@pytest.mark.parametrize(
    ("events", "trials", "kwargs"),
    [
        (1, 0, {"limit": 0.02}),
        (-1, 3, {"limit": 0.02}),
        (0, 3, {"limit": 0.0}),
        (0, 3, {"limit": 1.0}),
        (0, 3, {"limit": 0.02, "tolerated": 0.03}),
        (0, 3, {"limit": 0.02, "min_sample": 0}),
        (0, 3, {"limit": 0.02, "alpha": 0.6}),
    ],
)
def test_rate_alarm_refuses_bad_parameters(
    events: int, trials: int, kwargs: dict[str, float]
) -> None:
    with pytest.raises(PolicyError):
        rate_alarm(events, trials, **kwargs)  # type: ignore[arg-type]


def _first_alarm(
    rng: random.Random, true_rate: float, outcomes: int, look_every: int
) -> int | None:
    """Simulate outcomes arriving one by one; the rollout evaluates every ``look_every``."""
    failures = 0
    for n in range(1, outcomes + 1):
        failures += rng.random() < true_rate
        if n % look_every == 0 and rate_alarm(failures, n, limit=0.02, min_sample=20).alarm:
            return n
    return None


def test_rate_alarm_false_alarms_stay_below_alpha_under_repeated_looks() -> None:
    rng = random.Random(1201)
    runs = 300
    alarms = sum(_first_alarm(rng, 0.01, 1000, 5) is not None for _ in range(runs))
    # alpha = 1 % whatever the number of looks (Ville); allow sampling noise on 300 runs
    assert alarms / runs <= 0.02


def test_rate_alarm_detects_a_true_five_percent_rate() -> None:
    rng = random.Random(1202)
    runs = 200
    firsts = [_first_alarm(rng, 0.05, 1000, 5) for _ in range(runs)]
    detected = [n for n in firsts if n is not None]
    assert len(detected) / runs >= 0.99
    # about 160 outcomes on average (the drift of the 4 % alternative is ~0.04 per outcome)
    assert 100 <= sum(detected) / len(detected) <= 300


def _u_brute_force(x: list[float], y: list[float]) -> float:
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)


@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=15),
    st.lists(st.integers(0, 6), min_size=1, max_size=15),
)
def test_mann_whitney_u_counts_pairs(x: list[int], y: list[int]) -> None:
    result = mann_whitney_greater([float(v) for v in x], [float(v) for v in y])
    assert result.u == pytest.approx(_u_brute_force([float(v) for v in x], [float(v) for v in y]))
    assert 0.0 <= result.p_value <= 1.0


def test_mann_whitney_p_value_is_close_to_the_exact_one() -> None:
    x = [3.1, 4.5, 5.2, 6.0, 6.3, 7.7, 8.1]
    y = [1.0, 2.2, 2.9, 3.5, 4.0, 5.0, 5.5]
    observed = _u_brute_force(x, y)
    pooled = x + y
    at_least = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        chosen = set(idx)
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        total += 1
        at_least += _u_brute_force(xs, ys) >= observed
    exact = at_least / total
    assert mann_whitney_greater(x, y).p_value == pytest.approx(exact, abs=0.01)
    assert mann_whitney_greater(x, y).p_value < 0.05
    assert mann_whitney_greater(y, x).p_value > 0.95


def test_mann_whitney_all_tied_is_no_evidence() -> None:
    assert mann_whitney_greater([1.0, 1.0], [1.0, 1.0, 1.0]).p_value == 1.0
    with pytest.raises(PolicyError):
        mann_whitney_greater([], [1.0])
