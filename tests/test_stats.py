"""gcnas.stats: each formula against values worked out by hand, ties and undefined cases included."""
from __future__ import annotations

import math

import pytest

from gcnas.stats import bootstrap_interval, kendall_tau, noise_verdict, ranks, spearman_rho, t975, t_interval


def test_t975_takes_the_next_smaller_listed_degrees_of_freedom():
    assert (t975(1), t975(11), t975(1000)) == (12.706, 2.228, 1.960)  # 11 falls back to df 10: wider, not narrower
    with pytest.raises(ValueError, match="degrees of freedom must be >= 1"):
        t975(0)


def test_t_interval_of_a_mean():
    lo, hi = t_interval([0.01, 0.02, 0.03])  # mean 0.02, sd 0.01, t(2) 4.303: half-width 4.303 * 0.01 / sqrt(3)
    assert lo == pytest.approx(0.02 - 0.024844, abs=1e-6) and hi == pytest.approx(0.02 + 0.024844, abs=1e-6)
    assert t_interval([0.5]) is None


def test_kendall_tau_counts_ties_on_one_side_only():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # tau-b: 5 concordant, 0 discordant, one pair tied in y only -> 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 3]) == pytest.approx(5 / 30 ** 0.5)
    assert math.isnan(kendall_tau([1, 1, 1], [2, 2, 2]))  # every pair tied: undefined


def test_ranks_share_ties_and_spearman_is_pearson_of_ranks():
    assert ranks([10, 30, 20, 30]) == [0.0, 2.5, 1.0, 2.5]
    assert spearman_rho([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman_rho([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)
    assert math.isnan(spearman_rho([1, 2, 3], [5, 5, 5]))


def test_bootstrap_interval_brackets_the_statistic_and_narrows_with_more_items():
    values = [float(i % 7) for i in range(70)]

    def mean_of(idx):
        return sum(values[i] for i in idx) / len(idx)
    lo, hi = bootstrap_interval(mean_of, len(values), reps=400)
    assert lo < 3.0 < hi  # the mean of the items
    assert hi - lo < 1.5
    short = bootstrap_interval(lambda idx: sum(values[i] for i in idx[:7]) / 7, len(values), reps=400)
    assert short[1] - short[0] > hi - lo  # a statistic of fewer draws moves more
    assert bootstrap_interval(lambda idx: 0.5, 10, reps=50) == (0.5, 0.5)


def test_bootstrap_interval_leaves_out_undefined_resamples():
    # tau over a resample of one distinct item is NaN; left in, NaN would scramble the sorted values
    assert bootstrap_interval(lambda idx: float("nan") if len(set(idx)) == 1 else 1.0, 2, reps=200) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval(lambda idx: float("nan"), 5, reps=20))


def test_noise_verdict_says_where_zero_lies():
    assert noise_verdict(-0.1, 0.2) == "inside the noise"
    assert noise_verdict(0.01, 0.2) == "above it" and noise_verdict(-0.3, -0.01) == "below it"
    assert noise_verdict(math.nan, math.nan) == "no interval (every resample tied)"
