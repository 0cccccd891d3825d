"""The helpers the benchmark scripts share, where a mistake would silently change a published number."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import Fidelity, bootstrap_interval, config, kendall_tau, spread  # noqa: E402
from fidelity import sample  # noqa: E402
from oneshot import pooled_sample  # noqa: E402


def test_spread_is_mean_and_sample_std_scaled():
    assert spread([0.5, 0.7], 100) == "60.00 ± 14.14"
    assert spread([0.25, 0.5, 0.75], digits=3) == "0.500 ± 0.250"
    assert spread([0.3]) == "0.30 ± 0.00"  # one value: no spread, not an error


def test_kendall_tau_counts_ties_on_one_side_only():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # tau-b: 5 concordant, 0 discordant, one pair tied in y only -> 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 3]) == pytest.approx(5 / 30 ** 0.5)


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


def test_pooled_sample_is_each_seeds_sample_once_plain_first():
    cfg = config("data=context")
    fid = Fidelity(cfg)
    first, second = sample(cfg, fid, 6, 0), sample(cfg, fid, 6, 1)
    pooled = pooled_sample(cfg, fid, [6, 6], [0, 1])
    keys = [a.key() for a in pooled]
    assert len(keys) == len(set(keys))
    assert not pooled[0].placements  # the plain backbone, which every sample holds, comes first and once
    assert keys[:6] == [a.key() for a in first]  # the first seed's sample in its own order
    assert set(keys) == {a.key() for a in first} | {a.key() for a in second}
    assert len(pooled) < len(first) + len(second)
    assert [a.key() for a in pooled_sample(cfg, fid, [6], [0])] == keys[:6]
    assert len(pooled_sample(cfg, fid, [6, 3], [0, 1])) < len(pooled)  # each seed its own size
