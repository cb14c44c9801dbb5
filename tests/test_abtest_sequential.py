"""Sequential looks and the machinery by simulation: A/A runs, planted effects, boundaries.

All simulations are vectorised across runs (arrays of shape (runs, users, days)), seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from recsys.abtest import sequential as seq
from recsys.abtest import stats

ALPHA, RUNS, DAYS = 0.05, 1_000, 20
SPEND = np.arange(1, DAYS + 1) / DAYS
FPR_LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)  # alpha within binomial error


def brownian_z(info: np.ndarray, runs: int, drift: float, rng) -> np.ndarray:
    """(runs, K) z statistics of a Brownian motion with drift observed at information `info`."""
    steps = np.diff(info, prepend=0.0)
    score = np.cumsum(drift * steps + np.sqrt(steps) * rng.standard_normal((runs, info.size)), 1)
    return score / np.sqrt(info)


@pytest.mark.parametrize(("spending", "rho"), [("power", 3.0), ("power", 1.0), ("obf", 0.0)])
def test_boundaries_spend_exactly_the_planned_alpha_by_monte_carlo(spending, rho):
    info = np.cumsum(np.r_[40.0, np.random.default_rng(0).integers(3, 30, DAYS - 1)])
    c = seq.boundaries(info, SPEND, ALPHA, spending, rho)
    z = brownian_z(info, 200_000, 0.0, np.random.default_rng(1))
    crossed = np.abs(z) >= c  # (runs, K)
    first_by_look = np.cumsum(np.bincount(crossed.argmax(1)[crossed.any(1)], minlength=DAYS))
    planned = seq.spent_alpha(SPEND, ALPHA, spending, rho)
    simulated = first_by_look / 200_000
    assert simulated == pytest.approx(planned, abs=4 * math.sqrt(ALPHA / 200_000) + 1e-4)
    assert seq.crossing_probability(info, c, 0.0) == pytest.approx(ALPHA, rel=1e-6)


def aa_user_runs(rng, runs: int = RUNS, n_users: int = 150):
    """A/A runs of the real per-user statistic: users return over days, heavy-tailed events.

    Returns the (runs, DAYS) paired-t z of the cumulative per-user mean differences and the
    information (cumulative user-days) at each look.
    """
    first = rng.integers(0, DAYS, n_users)
    active = (np.arange(DAYS)[None, :] >= first[:, None]) & (rng.random((n_users, DAYS)) < 0.3)
    active[np.arange(n_users), first] = True  # (users, days)
    counts = active * rng.integers(1, 40, (n_users, DAYS))  # events per user-day
    scale = rng.gamma(2.0, 0.5, n_users)[None, :, None]  # users differ in noise
    # sum of `counts` per-event differences (t with 4 df: heavy tails), mean 0 under A/A
    sums = scale * np.sqrt(counts)[None] * rng.standard_t(4, (runs, n_users, DAYS)) / np.sqrt(2)
    cum_sum, cum_n = np.cumsum(sums, axis=2), np.cumsum(counts, axis=1)[None]
    seen = cum_n > 0
    means = np.where(seen, cum_sum / np.maximum(cum_n, 1), 0.0)  # (runs, users, days)
    n = seen.sum(axis=1)  # (1, days) users seen so far
    mean = means.sum(axis=1) / n
    var = (np.where(seen, means**2, 0).sum(axis=1) - n * mean**2) / (n - 1)
    t = mean / np.sqrt(var / n)
    z = np.sign(t) * sps.norm.isf(sps.t.sf(np.abs(t), n - 1))
    info = np.cumsum(active.sum(axis=0)).astype(float)
    return z, info


def test_aa_sequential_decision_keeps_alpha_while_naive_daily_tests_inflate_it():
    z, info = aa_user_runs(np.random.default_rng(42))
    c = seq.boundaries(info, SPEND, ALPHA, "power", 3.0)
    sequential_fpr = np.mean((np.abs(z) >= c).any(axis=1))
    naive_fpr = np.mean((np.abs(z) >= sps.norm.isf(ALPHA / 2)).any(axis=1))
    assert sequential_fpr <= FPR_LIMIT
    assert naive_fpr > 3 * ALPHA  # peeking every day with fixed-sample tests: far above alpha
    # the repeated p-value is the same decision: p̃ ≤ alpha iff some look crossed
    repeated = seq.repeated_p_values(z, info, SPEND, "power", 3.0, exact_at=(ALPHA,))[:, -1]
    assert np.array_equal(repeated <= ALPHA, (np.abs(z) >= c).any(axis=1))
    assert sps.kstest(sps.norm.sf(np.abs(z[:, -1])) * 2, "uniform").pvalue > 0.01


def test_aa_holm_over_correlated_metrics_keeps_the_family_wise_error():
    rng = np.random.default_rng(7)
    info = np.cumsum(rng.integers(20, 60, DAYS)).astype(float)
    n_metrics = 5
    common = brownian_z(info, RUNS, 0.0, rng)  # metrics share half their noise
    z = np.stack([(common + brownian_z(info, RUNS, 0.0, rng)) / np.sqrt(2) for _ in range(5)])
    levels = tuple(ALPHA / m for m in range(1, n_metrics + 1))
    p = seq.repeated_p_values(z.reshape(-1, DAYS), info, SPEND, "power", 3.0, levels)[:, -1]
    adjusted = np.apply_along_axis(stats.holm, 0, p.reshape(n_metrics, RUNS))  # (metrics, runs)
    assert np.mean((adjusted <= ALPHA).any(axis=0)) <= FPR_LIMIT


def test_aa_fixed_sample_p_values_are_uniform():
    rng = np.random.default_rng(3)
    a = rng.lognormal(0, 0.6, (RUNS, 60))
    b = rng.lognormal(0, 0.6, (RUNS, 60))
    paired = [stats.paired_t(b[i] - a[i]).p_value for i in range(RUNS)]
    welch = [stats.welch_t(a[i, :30], b[i, 30:]).p_value for i in range(RUNS)]
    lift = [stats.relative_lift_delta(a[i, :30], b[i, 30:]).p_value for i in range(RUNS)]
    perm = [stats.sign_flip_p(b[i] - a[i], n_permutations=499, seed=i) for i in range(RUNS)]
    for name, p in {"paired": paired, "welch": welch, "lift": lift, "perm": perm}.items():
        assert sps.kstest(p, "uniform").pvalue > 0.01, name


def test_planted_effect_is_found_with_the_theoretical_power():
    rng = np.random.default_rng(5)
    n, delta = 100, 0.25  # effect in SDs of the per-user difference
    diffs = delta + rng.standard_normal((RUNS, n))
    power = np.mean([stats.paired_t(d).p_value <= ALPHA for d in diffs])
    z_a = sps.norm.isf(ALPHA / 2)
    theory = sps.norm.cdf(delta * math.sqrt(n) - z_a) + sps.norm.cdf(-delta * math.sqrt(n) - z_a)
    assert power == pytest.approx(theory, abs=3 * math.sqrt(theory * (1 - theory) / RUNS) + 0.01)


def test_sequential_power_matches_the_numerical_crossing_probability():
    info = np.linspace(50, 1000, DAYS)  # users
    c = seq.boundaries(info, SPEND, ALPHA, "power", 3.0)
    drift = 0.09  # effect / per-user SD: fixed-sample power at 1,000 users is about 0.85
    theory = seq.crossing_probability(info, c, drift)
    z = brownian_z(info, 20_000, drift, np.random.default_rng(8))
    simulated = np.mean((np.abs(z) >= c).any(axis=1))
    assert simulated == pytest.approx(theory, abs=3 * math.sqrt(theory * (1 - theory) / 20_000))
    fixed = sps.norm.cdf(drift * math.sqrt(1000) - sps.norm.isf(ALPHA / 2))
    assert fixed - 0.06 < theory < fixed  # peeking safely costs only a little power
