"""Textbook statistics for rollout decisions, written with ``math`` and ``statistics`` only.

A rollout must not stop because 1 device in 3 failed, and must stop when a release really fails
on 5 % of devices; a health gate must not hold a release because of noise, and must hold one
that really makes devices slower. Each decision here is a standard test whose error rate is
known, so the thresholds an operator sets mean what they say:

- **Failure rates** (``rate_alarm``): a sequential probability ratio test (A. Wald,
  "Sequential Tests of Statistical Hypotheses", Ann. Math. Statist. 16(2), 1945) of a tolerated
  rate ``p0`` against the limit, with only its rejection boundary ``ln(1/alpha)``. The
  alternative is a mixture: the average of Wald's likelihood ratios for ``limit``,
  ``2*limit``, ``4*limit``... (below 1), so a canary phase where 1 device in 5 fails is caught
  from a few dozen outcomes while a rate just above the limit is still caught (H. Robbins,
  "Statistical methods related to the law of the iterated logarithm", Ann. Math. Statist. 41,
  1970, for mixtures of likelihood ratios). A rollout looks at its counts again and again; under
  ``p <= p0`` each likelihood ratio, and so their average, is a nonnegative supermartingale, so
  by Ville's inequality (J. Ville, "Etude critique de la notion de collectif", 1939) the chance
  that it *ever* crosses ``1/alpha`` is at most ``alpha``, however often it is evaluated. A
  fixed-sample test evaluated after every report would not keep that.
- **Intervals for evidence** (``wilson_bounds``): the Wilson score interval (E. B. Wilson,
  "Probable inference, the law of succession, and statistical inference", JASA 22, 1927), which
  behaves at 0 and 1 events where the normal (Wald) interval collapses.
- **Difference of two proportions** (``newcombe_difference``): Newcombe's hybrid score
  interval, method 10 of R. G. Newcombe, "Interval estimation for the difference between
  independent proportions", Statistics in Medicine 17, 1998; built from two Wilson intervals, so
  it also behaves with zero failures in either group.
- **Shift of a numeric signal** (``mann_whitney_greater``): the one-sided Mann-Whitney U test
  (H. B. Mann, D. R. Whitney, Ann. Math. Statist. 18(1), 1947) with mid-ranks for ties, the
  tie-corrected variance and a continuity correction (E. L. Lehmann, "Nonparametrics", 1975,
  ch. 1), by its normal approximation. It assumes nothing about the shape of boot times or
  restart counts, which are skewed and full of ties.

No I/O and no clock: plain counts and samples in, a verdict out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from otaguard.errors import PolicyError

_NORMAL = NormalDist()


def z_one_sided(alpha: float) -> float:
    """The standard normal quantile ``z`` with ``P(Z > z) = alpha``."""
    if not 0.0 < alpha < 0.5:
        raise PolicyError(f"alpha must be in (0, 0.5), got {alpha}")
    return _NORMAL.inv_cdf(1.0 - alpha)


def wilson_bounds(events: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson score bounds for the rate ``events / trials`` (each bound one-sided at ``z``).

    No trials means nothing is known: ``(0.0, 1.0)``.
    """
    _check_counts(events, trials)
    if trials == 0:
        return 0.0, 1.0
    p = events / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if events == 0 else max(0.0, centre - half)
    high = 1.0 if events == trials else min(1.0, centre + half)
    return low, high


def newcombe_difference(
    events_a: int, trials_a: int, events_b: int, trials_b: int, z: float
) -> tuple[float, float]:
    """Bounds (each one-sided at ``z``) for ``rate_a - rate_b`` by Newcombe's hybrid score
    method: ``d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)`` and ``d + sqrt((u_a - p_a)^2 +
    (p_b - l_b)^2)``, where ``l``/``u`` are the Wilson bounds of each rate."""
    l_a, u_a = wilson_bounds(events_a, trials_a, z)
    l_b, u_b = wilson_bounds(events_b, trials_b, z)
    p_a = events_a / trials_a if trials_a else 0.5
    p_b = events_b / trials_b if trials_b else 0.5
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class RateTest:
    """The outcome of testing whether a rate of bad events exceeds ``limit``.

    ``alarm`` is the decision; the rest is evidence an operator can read: the observed rate,
    its Wilson bounds, the SPRT log-likelihood ratio and the boundary it is compared with.
    ``judged`` is false while there are fewer than ``min_sample`` trials (no alarm then).
    """

    events: int
    trials: int
    limit: float
    tolerated: float
    observed: float
    lower: float
    upper: float
    log_likelihood_ratio: float
    boundary: float
    judged: bool
    alarm: bool

    def evidence(self) -> dict[str, float | int | bool]:
        return {
            "events": self.events,
            "trials": self.trials,
            "observed_rate": round(self.observed, 6),
            "limit": self.limit,
            "tolerated": self.tolerated,
            "wilson_lower": round(self.lower, 6),
            "wilson_upper": round(self.upper, 6),
            "log_likelihood_ratio": round(self.log_likelihood_ratio, 4),
            "boundary": round(self.boundary, 4),
            "judged": self.judged,
        }


def rate_alarm(
    events: int,
    trials: int,
    *,
    limit: float,
    alpha: float = 0.01,
    tolerated: float | None = None,
    min_sample: int = 1,
) -> RateTest:
    """Does the rate of ``events`` among ``trials`` exceed ``limit``? One-sided mixture SPRT.

    H0: the true rate is ``tolerated`` (default ``limit / 2``); H1: it is one of ``limit * 2^k``
    below 1, equally weighted. With ``llr(p1) = e*ln(p1/p0) + (n-e)*ln((1-p1)/(1-p0))``, the
    alarm is raised when ``ln(mean(exp(llr(p1))))`` reaches ``ln(1/alpha)``: the chance of a
    false alarm while the true rate is at most ``tolerated`` is at most ``alpha`` over any
    number of looks (Ville). Examples with ``limit=0.02``, ``alpha=0.01`` (boundary 4.61):
    1 failure in 3 gives 2.07 (no alarm); 6 in 30 give 11.3 (alarm); a true 5 % rate crosses
    after about 160 outcomes on average.

    Raises:
        PolicyError: a count or parameter out of range.
    """
    _check_counts(events, trials)
    p1 = limit
    p0 = limit / 2 if tolerated is None else tolerated
    if not 0.0 < p0 < p1 < 1.0:
        raise PolicyError(f"need 0 < tolerated < limit < 1, got tolerated={p0}, limit={p1}")
    if min_sample < 1:
        raise PolicyError(f"min_sample must be at least 1, got {min_sample}")
    z = z_one_sided(alpha)
    llr = _mixture_llr(events, trials, p0, p1)
    boundary = math.log(1.0 / alpha)
    lower, upper = wilson_bounds(events, trials, z)
    judged = trials >= min_sample
    return RateTest(
        events=events,
        trials=trials,
        limit=p1,
        tolerated=p0,
        observed=events / trials if trials else 0.0,
        lower=lower,
        upper=upper,
        log_likelihood_ratio=llr,
        boundary=boundary,
        judged=judged,
        alarm=judged and llr >= boundary,
    )


def _mixture_llr(events: int, trials: int, p0: float, p1: float) -> float:
    """``ln`` of the mean likelihood ratio over the alternatives ``p1 * 2^k < 1``."""
    terms = []
    alternative = p1
    while alternative < 1.0:
        terms.append(
            events * math.log(alternative / p0)
            + (trials - events) * math.log((1 - alternative) / (1 - p0))
        )
        alternative *= 2
    top = max(terms)  # log-sum-exp, so large counts do not overflow
    return top + math.log(sum(math.exp(t - top) for t in terms) / len(terms))


@dataclass(frozen=True)
class MannWhitney:
    """One-sided Mann-Whitney U: ``x`` tends to be greater than ``y``."""

    u: float
    z: float
    p_value: float


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> MannWhitney:
    """Test H1 "values of ``x`` tend to be greater than those of ``y``" (normal approximation
    with mid-ranks, tie-corrected variance and continuity correction; fine from ~8 per group).

    Raises:
        PolicyError: either sample is empty.
    """
    n_x, n_y = len(x), len(y)
    if n_x == 0 or n_y == 0:
        raise PolicyError("Mann-Whitney U needs at least one value in each group")
    ranks, tie_term = _mid_ranks([*x, *y])
    u = sum(ranks[:n_x]) - n_x * (n_x + 1) / 2
    n = n_x + n_y
    mean = n_x * n_y / 2
    variance = n_x * n_y / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0.0:  # every value equal: no evidence of any shift
        return MannWhitney(u=u, z=0.0, p_value=1.0)
    z = (u - mean - 0.5) / math.sqrt(variance)
    return MannWhitney(u=u, z=z, p_value=1.0 - _NORMAL.cdf(z))


def _mid_ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Ranks 1..n in input order (ties share their mean rank) and the tie term sum(t^3 - t)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    tie_term = 0.0
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        mid = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = mid
        t = end - start + 1
        tie_term += t**3 - t
        start = end + 1
    return ranks, tie_term


def _check_counts(events: int, trials: int) -> None:
    if trials < 0 or events < 0 or events > trials:
        raise PolicyError(f"need 0 <= events <= trials, got events={events}, trials={trials}")
