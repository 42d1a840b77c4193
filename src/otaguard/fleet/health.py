"""The health gate: are devices on the new release worse off than those still on the old one?

A release can install and commit everywhere and still hurt: slower boots, more crashes, failing
application checks. After install, devices report a few health signals for a window; before a
rollout widens, the updated devices are compared with a **control cohort** that still runs the
old version, hardware type by hardware type (a slow board must not make a release look slow).

For each hardware type with enough devices on both sides (``min_devices`` values of a signal in
each group), each signal is tested one-sided for "updated is worse than control by more than
the margin":

- numeric signals (boot time, restart count, custom metrics): the Mann-Whitney U test
  (``stats.mann_whitney_greater``) after shifting the updated values by the margin in their
  favour (``margin`` in the signal's units plus ``relative_margin`` times the control median),
  so only a regression beyond the margin can be significant;
- the health-check result: Newcombe's score bound for the difference of failure rates
  (``stats.newcombe_difference``); worse when its lower bound exceeds ``check_failure_margin``.

``alpha`` is the family-wise false-hold rate: it is split evenly over the tests actually run
(Bonferroni), so adding metrics or hardware types does not make false holds more likely. The gate
says ``hold`` on any finding, ``insufficient`` when nothing could be compared (or, with
``require_all_hardware``, when some updated hardware type could not be), else ``pass``.

Pure: reports in, a verdict with evidence out.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from otaguard.errors import PolicyError
from otaguard.fleet.stats import mann_whitney_greater, newcombe_difference, z_one_sided


class Direction(StrEnum):
    LOWER_IS_BETTER = "lower_is_better"
    HIGHER_IS_BETTER = "higher_is_better"


class GateVerdict(StrEnum):
    PASS = "pass"
    HOLD = "hold"
    INSUFFICIENT = "insufficient"


BOOT_TIME = "boot_time"
RESTARTS = "restarts"
HEALTH_CHECK = "health_check"


@dataclass(frozen=True)
class HealthReport:
    """What one device reported over its health window (``None``: not reported)."""

    device_id: str
    hardware: str
    boot_seconds: float | None = None
    restarts: int | None = None
    check_passed: bool | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricRule:
    """How a numeric signal is judged: its direction and the regression tolerated."""

    name: str
    direction: Direction = Direction.LOWER_IS_BETTER
    margin: float = 0.0
    relative_margin: float = 0.0


@dataclass(frozen=True)
class HealthPolicy:
    boot_time: MetricRule = MetricRule(BOOT_TIME, relative_margin=0.10)
    restarts: MetricRule = MetricRule(RESTARTS, margin=0.5)
    check_failure_margin: float = 0.02
    metrics: tuple[MetricRule, ...] = ()
    alpha: float = 0.01
    min_devices: int = 10
    require_all_hardware: bool = False


def validate_health_policy(policy: HealthPolicy) -> HealthPolicy:
    """Return ``policy`` if sound.

    Raises:
        PolicyError: every problem found, in ``problems``.
    """
    problems = []
    rules = (policy.boot_time, policy.restarts, *policy.metrics)
    for rule in rules:
        if rule.margin < 0 or rule.relative_margin < 0:
            problems.append(f"{rule.name}: margins must not be negative")
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        problems.append("metric names must be unique (boot_time and restarts are taken)")
    if not 0.0 <= policy.check_failure_margin < 1.0:
        problems.append("check_failure_margin must be in [0, 1)")
    if not 0.0 < policy.alpha < 0.5:
        problems.append("alpha must be in (0, 0.5)")
    if policy.min_devices < 5:
        problems.append("min_devices must be at least 5 (the normal approximation needs it)")
    if problems:
        raise PolicyError("invalid health policy: " + "; ".join(problems), problems=tuple(problems))
    return policy


@dataclass(frozen=True)
class Finding:
    """One signal on one hardware type where updated devices are worse beyond the margin."""

    hardware: str
    signal: str
    message: str
    evidence: Mapping[str, float | int | str]


@dataclass(frozen=True)
class HealthGate:
    verdict: GateVerdict
    findings: tuple[Finding, ...]
    tests: int
    alpha_per_test: float
    skipped: Mapping[str, str]  # hardware -> why it was not compared

    def evidence(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "tests": self.tests,
            "alpha_per_test": self.alpha_per_test,
            "findings": [
                {"hardware": f.hardware, "signal": f.signal, **f.evidence} for f in self.findings
            ],
            "skipped": dict(self.skipped),
        }


@dataclass(frozen=True)
class _Comparison:
    hardware: str
    signal: str
    updated: Sequence[float]
    control: Sequence[float]
    rule: MetricRule | None  # None: the pass/fail health check


def compare_health(
    updated: Sequence[HealthReport], control: Sequence[HealthReport], policy: HealthPolicy
) -> HealthGate:
    """The gate's verdict for ``updated`` devices against the ``control`` cohort."""
    validate_health_policy(policy)
    comparisons, skipped = _plan_comparisons(updated, control, policy)
    tests = len(comparisons)
    alpha = policy.alpha / tests if tests else policy.alpha
    findings = tuple(
        f for c in comparisons if (f := _judge(c, alpha, policy.check_failure_margin)) is not None
    )
    if findings:
        verdict = GateVerdict.HOLD
    elif not tests or (policy.require_all_hardware and skipped):
        verdict = GateVerdict.INSUFFICIENT
    else:
        verdict = GateVerdict.PASS
    return HealthGate(verdict, findings, tests, alpha, skipped)


def _plan_comparisons(
    updated: Sequence[HealthReport], control: Sequence[HealthReport], policy: HealthPolicy
) -> tuple[list[_Comparison], dict[str, str]]:
    extractors: list[tuple[str, MetricRule | None, Callable[[HealthReport], float | None]]] = [
        (BOOT_TIME, policy.boot_time, lambda r: r.boot_seconds),
        (RESTARTS, policy.restarts, lambda r: None if r.restarts is None else float(r.restarts)),
        (
            HEALTH_CHECK,
            None,
            lambda r: None if r.check_passed is None else float(not r.check_passed),
        ),
    ]
    extractors += [(m.name, m, _metric_getter(m.name)) for m in policy.metrics]
    comparisons: list[_Comparison] = []
    skipped: dict[str, str] = {}
    for hardware in sorted({r.hardware for r in updated}):
        mine = [r for r in updated if r.hardware == hardware]
        theirs = [r for r in control if r.hardware == hardware]
        before = len(comparisons)
        for signal, signal_rule, get in extractors:
            u = [v for r in mine if (v := get(r)) is not None]
            c = [v for r in theirs if (v := get(r)) is not None]
            if len(u) >= policy.min_devices and len(c) >= policy.min_devices:
                comparisons.append(_Comparison(hardware, signal, u, c, signal_rule))
        if len(comparisons) == before:
            skipped[hardware] = (
                f"fewer than {policy.min_devices} reports on a signal in a group "
                f"({len(mine)} updated, {len(theirs)} control devices)"
            )
    return comparisons, skipped


def _metric_getter(name: str) -> Callable[[HealthReport], float | None]:
    return lambda r: r.metrics.get(name)


def _judge(c: _Comparison, alpha: float, check_margin: float) -> Finding | None:
    if c.rule is None:
        return _judge_check(c, alpha, check_margin)
    rule = c.rule
    control_median = statistics.median(c.control)
    shift = rule.margin + rule.relative_margin * abs(control_median)
    if rule.direction is Direction.LOWER_IS_BETTER:
        result = mann_whitney_greater([v - shift for v in c.updated], c.control)
    else:
        result = mann_whitney_greater(c.control, [v + shift for v in c.updated])
    if result.p_value >= alpha:
        return None
    updated_median = statistics.median(c.updated)
    evidence: dict[str, float | int | str] = {
        "test": "mann_whitney_u_one_sided",
        "updated_median": updated_median,
        "control_median": control_median,
        "margin": round(shift, 6),
        "direction": rule.direction.value,
        "p_value": result.p_value,
        "alpha": alpha,
        "updated_n": len(c.updated),
        "control_n": len(c.control),
    }
    message = (
        f"{c.signal} on {c.hardware}: updated median {updated_median:g} vs control "
        f"{control_median:g}, worse beyond the margin {shift:g} (p={result.p_value:.2g})"
    )
    return Finding(c.hardware, c.signal, message, evidence)


def _judge_check(c: _Comparison, alpha: float, margin: float) -> Finding | None:
    fail_u, fail_c = round(sum(c.updated)), round(sum(c.control))
    n_u, n_c = len(c.updated), len(c.control)
    lower, _ = newcombe_difference(fail_u, n_u, fail_c, n_c, z_one_sided(alpha))
    if lower <= margin:
        return None
    evidence: dict[str, float | int | str] = {
        "test": "newcombe_difference_lower_bound",
        "updated_failures": fail_u,
        "updated_n": n_u,
        "control_failures": fail_c,
        "control_n": n_c,
        "difference_lower_bound": round(lower, 6),
        "margin": margin,
        "alpha": alpha,
    }
    message = (
        f"health check on {c.hardware}: {fail_u}/{n_u} updated devices failed vs "
        f"{fail_c}/{n_c} on the old version; the excess is at least {lower:.1%} "
        f"(margin {margin:.1%})"
    )
    return Finding(c.hardware, c.signal, message, evidence)
