"""The statistics gcnas states its claims with, in one place: rank agreement (Kendall's tau-b, Spearman's rho),
Student's t interval of a mean, bootstrap percentile intervals, and where zero lies against an interval.

Used by the confirmation stage (paired differences over seeds: :func:`t_interval`), the benchmarks (how well a cheap
ranking agrees with a costly one, and whether a difference of two such agreements lies beyond the noise), and the
tests that pin each formula. Plain Python (``statistics``, ``random``): no numpy or scipy, so every layer may import it.
"""
from __future__ import annotations

import math
import random
import statistics
from typing import Callable, Optional, Sequence

__all__ = ["t975", "t_interval", "kendall_tau", "ranks", "spearman_rho", "bootstrap_interval", "noise_verdict"]

# Two-sided 95% quantiles of Student's t by degrees of freedom; between the listed ones the next smaller df is used
# (a slightly wider, conservative interval), past 30 the normal 1.960.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (see :data:`_T975`)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1; got {df}")
    if df > 30:
        return 1.960
    return _T975[max(d for d in _T975 if d <= df)]


def t_interval(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """The 95 % confidence interval of the mean of ``values`` (Student's t); None with fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (pairs tied on one side count in that side's denominator only); NaN when every pair ties."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n = concordant + discordant
    denom = ((n + ties_x) * (n + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else float("nan")


def ranks(x: Sequence[float]) -> list[float]:
    """0-based ranks of ``x``; tied values share their mean rank."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    out = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson's r of the ranks, ties sharing their mean rank); NaN when one side is constant."""
    try:
        return statistics.correlation(ranks(x), ranks(y))
    except statistics.StatisticsError:
        return float("nan")


def bootstrap_interval(stat: Callable[[list[int]], float], n: int, reps: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile interval of ``stat(indices)`` over ``reps`` resamples of ``range(n)`` with replacement: how
    much a statistic of ``n`` items (a difference of two taus over the same architectures, say) moves with the
    items drawn. Resamples on which the statistic is undefined (NaN: a tau over one distinct item, say) are left
    out, since NaN would scramble the sort; NaN both ways when every resample is."""
    rng = random.Random(seed)
    values = sorted(v for v in (stat([rng.randrange(n) for _ in range(n)]) for _ in range(reps)) if v == v)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return values[int(tail * (len(values) - 1))], values[int(round((1 - tail) * (len(values) - 1)))]


def noise_verdict(lo: float, hi: float) -> str:
    """Where zero lies against a difference's interval (:func:`bootstrap_interval`, :func:`t_interval`)."""
    if math.isnan(lo):
        return "no interval (every resample tied)"
    return "inside the noise" if lo <= 0 <= hi else ("above it" if lo > 0 else "below it")
