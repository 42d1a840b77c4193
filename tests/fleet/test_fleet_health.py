"""The health gate against a control cohort, on seeded known distributions (fleet/health.py)."""

from __future__ import annotations

import random

import pytest

from otaguard.errors import PolicyError
from otaguard.fleet.health import (
    BOOT_TIME,
    HEALTH_CHECK,
    RESTARTS,
    Direction,
    GateVerdict,
    HealthPolicy,
    HealthReport,
    MetricRule,
    compare_health,
    validate_health_policy,
)


def _devices(
    rng: random.Random,
    n: int,
    hardware: str,
    *,
    boot: float = 30.0,
    restart_p: float = 0.05,
    check_fail: float = 0.01,
    latency: float | None = None,
) -> list[HealthReport]:
    reports = []
    for i in range(n):
        metrics = {} if latency is None else {"latency_ms": rng.gauss(latency, 10.0)}
        reports.append(
            HealthReport(
                f"{hardware}-{i}",
                hardware,
                boot_seconds=rng.gauss(boot, 3.0),
                restarts=sum(rng.random() < restart_p for _ in range(3)),
                check_passed=rng.random() >= check_fail,
                metrics=metrics,
            )
        )
    return reports


def _hold_rate(runs: int, seed: int, n: int, policy: HealthPolicy, **updated: float) -> float:
    rng = random.Random(seed)
    holds = 0
    for _ in range(runs):
        gate = compare_health(_devices(rng, n, "a", **updated), _devices(rng, n, "a"), policy)
        holds += gate.verdict is GateVerdict.HOLD
    return holds / runs


def test_same_distribution_rarely_holds() -> None:
    # family-wise alpha 1 % over boot time, restarts and health check
    assert _hold_rate(200, 1, 50, HealthPolicy()) <= 0.03


def test_regression_within_the_margin_does_not_hold() -> None:
    # boots 5 % slower, margin 10 %
    assert _hold_rate(100, 2, 50, HealthPolicy(), boot=31.5) <= 0.03


def test_boot_time_regression_beyond_the_margin_holds() -> None:
    assert _hold_rate(50, 3, 50, HealthPolicy(), boot=37.5) >= 0.95


def test_more_restarts_hold() -> None:
    assert _hold_rate(50, 4, 50, HealthPolicy(), restart_p=0.5) >= 0.95


def test_failing_health_checks_hold() -> None:
    assert _hold_rate(40, 5, 200, HealthPolicy(), check_fail=0.15) >= 0.9


def test_custom_metric_higher_is_better() -> None:
    rng = random.Random(6)
    rule = MetricRule("latency_ms", Direction.HIGHER_IS_BETTER, margin=5.0)
    policy = HealthPolicy(metrics=(rule,))
    worse = _devices(rng, 60, "a", latency=60.0)
    control = _devices(rng, 60, "a", latency=100.0)
    gate = compare_health(worse, control, policy)
    assert gate.verdict is GateVerdict.HOLD
    assert [f.signal for f in gate.findings] == ["latency_ms"]
    assert gate.tests == 4
    assert gate.alpha_per_test == pytest.approx(0.0025)
    better = _devices(rng, 60, "a", latency=140.0)
    assert compare_health(better, control, policy).verdict is GateVerdict.PASS


def test_findings_carry_evidence_and_a_message() -> None:
    rng = random.Random(7)
    gate = compare_health(
        _devices(rng, 40, "a", boot=45.0, check_fail=0.6), _devices(rng, 40, "a"), HealthPolicy()
    )
    by_signal = {f.signal: f for f in gate.findings}
    assert set(by_signal) == {BOOT_TIME, HEALTH_CHECK}
    boot = by_signal[BOOT_TIME]
    assert boot.evidence["test"] == "mann_whitney_u_one_sided"
    assert float(boot.evidence["updated_median"]) > float(boot.evidence["control_median"])
    assert "worse beyond the margin" in boot.message
    check = by_signal[HEALTH_CHECK]
    assert float(check.evidence["difference_lower_bound"]) > 0.02
    ev = gate.evidence()
    assert ev["verdict"] == "hold"
    assert len(ev["findings"]) == 2  # type: ignore[arg-type]


def test_hardware_types_are_compared_separately() -> None:
    # updated devices are mostly slow boards, control mostly fast ones; same release behaviour
    rng = random.Random(8)
    updated = _devices(rng, 60, "slow", boot=60.0) + _devices(rng, 12, "fast")
    control = _devices(rng, 15, "slow", boot=60.0) + _devices(rng, 60, "fast")
    gate = compare_health(updated, control, HealthPolicy())
    assert gate.verdict is GateVerdict.PASS
    assert gate.tests == 6


def test_not_enough_devices_is_insufficient_not_pass() -> None:
    rng = random.Random(9)
    gate = compare_health(_devices(rng, 5, "a"), _devices(rng, 50, "a"), HealthPolicy())
    assert gate.verdict is GateVerdict.INSUFFICIENT
    assert "fewer than 10" in gate.skipped["a"]
    assert compare_health([], [], HealthPolicy()).verdict is GateVerdict.INSUFFICIENT


def test_require_all_hardware() -> None:
    rng = random.Random(10)
    updated = _devices(rng, 30, "a") + _devices(rng, 30, "b")
    control = _devices(rng, 30, "a")  # every "b" device is already updated
    assert compare_health(updated, control, HealthPolicy()).verdict is GateVerdict.PASS
    strict = HealthPolicy(require_all_hardware=True)
    gate = compare_health(updated, control, strict)
    assert gate.verdict is GateVerdict.INSUFFICIENT
    assert set(gate.skipped) == {"b"}


def test_signals_not_reported_are_not_tested() -> None:
    rng = random.Random(11)
    updated = [HealthReport(f"u{i}", "a", boot_seconds=rng.gauss(30, 3)) for i in range(20)]
    control = [HealthReport(f"c{i}", "a", boot_seconds=rng.gauss(30, 3)) for i in range(20)]
    gate = compare_health(updated, control, HealthPolicy())
    assert gate.tests == 1
    assert gate.verdict is GateVerdict.PASS
    assert RESTARTS not in {f.signal for f in gate.findings}


@pytest.mark.parametrize(
    "policy",
    [
        HealthPolicy(boot_time=MetricRule(BOOT_TIME, margin=-1)),
        HealthPolicy(metrics=(MetricRule(RESTARTS),)),
        HealthPolicy(check_failure_margin=1.0),
        HealthPolicy(alpha=0.0),
        HealthPolicy(min_devices=2),
    ],
)
def test_bad_policies_are_refused(policy: HealthPolicy) -> None:
    with pytest.raises(PolicyError):
        validate_health_policy(policy)
    with pytest.raises(PolicyError):
        compare_health([], [], policy)
