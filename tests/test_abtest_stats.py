"""Every fixed-sample statistic against an independent computation on fixed data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from recsys.abtest import stats

DIFF = np.array([0.5, -0.2, 1.1, 0.3, 0.0, 0.8, -0.4, 0.6])  # fixed per-user differences


def test_paired_t_matches_the_hand_formula_and_scipy():
    n, mean = DIFF.size, DIFF.mean()
    sd = math.sqrt(sum((d - mean) ** 2 for d in DIFF) / (n - 1))
    t_hand = mean / (sd / math.sqrt(n))
    result = stats.paired_t(DIFF)
    assert result.statistic == pytest.approx(t_hand, rel=1e-12)
    a = np.arange(n, dtype=float)
    assert result.p_value == pytest.approx(sps.ttest_rel(a + DIFF, a).pvalue, rel=1e-10)
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert (result.ci_low, result.ci_high) == pytest.approx((mean - half, mean + half))
    assert stats.effect_size_dz(DIFF) == pytest.approx(mean / sd)


def test_welch_matches_the_hand_formula_and_scipy():
    a = np.array([3.1, 2.4, 4.0, 3.3, 2.9])
    b = np.array([3.9, 4.4, 3.1, 4.8, 4.0, 4.6, 3.7])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    result = stats.welch_t(a, b)
    assert result.statistic == pytest.approx((b.mean() - a.mean()) / math.sqrt(va + vb))
    assert result.df == pytest.approx(df)
    assert result.p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)


def test_sign_flip_p_is_exact_on_a_tiny_case_enumerated_by_hand():
    diff = np.array([1.0, 2.0, -0.5, 3.0])
    observed = abs(diff.sum())
    flips = [
        abs(sum(s * d for s, d in zip(signs, diff, strict=True)))
        for signs in itertools.product((1, -1), repeat=4)
    ]
    exact = sum(f >= observed - 1e-12 for f in flips) / 16  # = 4/16 here
    assert stats.sign_flip_p(diff, n_permutations=16, seed=0) == exact == 0.25
    # Sampled sign vectors: (b + 1) / (m + 1) close to the exact value, never zero.
    sampled = stats.sign_flip_p(np.tile(diff, 3), n_permutations=20_000, seed=1)
    flips12 = np.array(list(itertools.product((1, -1), repeat=12))) @ np.tile(diff, 3)
    exact12 = np.mean(np.abs(flips12) >= abs(np.tile(diff, 3).sum()) - 1e-9)
    assert sampled == pytest.approx(exact12, abs=4 * math.sqrt(exact12 / 20_000))
    assert stats.sign_flip_p(np.full(30, 5.0), n_permutations=999, seed=0) == 1 / 1000


def _bca_by_hand(diff: np.ndarray, n_resamples: int, seed: int, alpha: float = 0.05):
    """Efron's BCa interval for the mean, written out (independent of scipy's code)."""
    rng = np.random.default_rng(seed)
    n, theta = diff.size, diff.mean()
    boot = diff[rng.integers(0, n, (n_resamples, n))].mean(axis=1)
    z0 = sps.norm.ppf(np.mean(boot < theta))
    jack = (diff.sum() - diff) / (n - 1)
    u = jack.mean() - jack
    accel = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    ends = []
    for q in (alpha / 2, 1 - alpha / 2):
        zq = sps.norm.ppf(q)
        ends.append(np.quantile(boot, sps.norm.cdf(z0 + (z0 + zq) / (1 - accel * (z0 + zq)))))
    return ends


def test_bca_bootstrap_matches_a_hand_written_bca():
    rng = np.random.default_rng(5)
    a = rng.exponential(1.0, 60)
    b = a + rng.exponential(0.3, 60)  # skewed differences: BCa differs from percentile
    low, high = stats.bootstrap_ci(a, b, paired=True, n_resamples=20_000, seed=3)
    hand_low, hand_high = _bca_by_hand(b - a, 20_000, seed=9)
    assert (low, high) == pytest.approx((hand_low, hand_high), abs=0.006)
    assert low < (b - a).mean() < high
    # unpaired: centred on the difference of means, wider than the paired one here
    u_low, u_high = stats.bootstrap_ci(a, b, paired=False, n_resamples=2000, seed=3)
    assert u_low < b.mean() - a.mean() < u_high and u_high - u_low > high - low


@pytest.mark.parametrize("paired", [True, False])
def test_bca_bootstrap_matches_scipy_bootstrap(paired: bool):
    rng = np.random.default_rng(6)
    a = rng.exponential(1.0, 80)
    b = (a if paired else rng.exponential(1.0, 80)) + rng.exponential(0.4, 80)
    ours = stats.bootstrap_ci(a, b, paired=paired, n_resamples=20_000, seed=1)
    theirs = sps.bootstrap(
        (a, b),
        lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis),
        paired=paired,
        n_resamples=20_000,
        method="BCa",
        rng=np.random.default_rng(2),
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.01)


def test_delta_method_lift_variance_matches_a_large_simulation():
    rng = np.random.default_rng(11)
    n_a, n_b, runs = 400, 300, 20_000
    a = rng.gamma(2.0, 0.5, (runs, n_a))  # mean 1.0
    b = rng.gamma(2.4, 0.5, (runs, n_b))  # mean 1.2: lift 0.2
    lifts = b.mean(axis=1) / a.mean(axis=1) - 1
    formula_var = np.mean([stats.relative_lift_delta(a[i], b[i]).se ** 2 for i in range(300)])
    assert formula_var == pytest.approx(lifts.var(), rel=0.04)
    assert formula_var == pytest.approx(0.6 / (1.0 * n_b) + 0.5 * 1.44 / n_a, rel=0.04)
    formula = stats.relative_lift_delta(a[0], b[0])
    assert lifts.mean() == pytest.approx(0.2, abs=0.003)
    # the gbstats formula itself, on one sample
    mu_a, mu_b = a[0].mean(), b[0].mean()
    gb = b[0].var(ddof=1) / (mu_a**2 * n_b) + a[0].var(ddof=1) * mu_b**2 / (mu_a**4 * n_a)
    assert formula.se == pytest.approx(math.sqrt(gb))


def test_holm_and_bh_match_hand_worked_examples():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> cummax
    assert stats.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: p_(i) * m / i = 0.02, 0.02, 0.04, 0.04, cumulative min from the top
    assert stats.benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(stats.holm(p)[4]) and np.isnan(stats.benjamini_hochberg(p)[4])


def test_srm_is_the_exact_binomial_test_of_the_arm_counts():
    def exact(k: int, n: int) -> float:  # two-sided, p = 0.5: twice the smaller tail
        return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n)

    small = stats.srm_check(27, 3)  # a day window's arms: exact 2 x 4,526 / 2^30
    assert small.p_value == pytest.approx(2 * 4_526 / 2**30) == pytest.approx(exact(3, 30))
    assert small.alarm and small.test == "exact binomial"
    ok = stats.srm_check(480, 520)
    assert ok.p_value == pytest.approx(exact(480, 1_000), rel=1e-6) and not ok.alarm
    assert stats.srm_check(6_000, 4_000).alarm


def test_zero_variance_uses_the_exact_sign_flip_not_p_zero():
    same = stats.paired_t(np.ones(3))  # the case: the t-test would say p = 0
    exact = stats.sign_flip_p(np.ones(3), n_permutations=2_000, seed=0)  # 2 of 8 sign vectors
    assert same.p_value == exact == 0.25 and same.test == "exact sign-flip"
    assert math.isnan(same.ci_low) and "zero variance" in same.note
    zeros = stats.paired_t(np.zeros(5))
    assert zeros.p_value == 1.0 and math.isnan(zeros.ci_low)
    welch = stats.welch_t(np.ones(4), np.full(4, 2.0))
    assert math.isnan(welch.p_value) and welch.note == "not testable: zero variance"
    one = stats.welch_t(np.ones(1), np.arange(5.0))
    assert one.note == "not testable: 1 user(s) in A, 5 in B (2 needed in each)"
    assert math.isnan(stats.paired_t(np.array([1.0])).p_value)
    assert math.isnan(stats.wilcoxon_p(np.zeros(6)))


def test_bootstrap_needs_min_users():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
    kwargs = {"paired": True, "n_resamples": 200, "seed": 0}
    assert all(math.isnan(v) for v in stats.bootstrap_ci(a, b, min_users=20, **kwargs))
    assert all(math.isfinite(v) for v in stats.bootstrap_ci(a, b, min_users=5, **kwargs))


def test_per_event_clustered_delta_method_by_hand():
    # users' summed differences d = 2, -1, 3 over n = 2, 1, 3 events: r = 4/6;
    # residuals d - r n = 2/3, -5/3, 1; Var = (4/9 + 25/9 + 1) / 6^2 x 3/2
    r = stats.event_paired(np.array([2.0, -1.0, 3.0]), np.array([2.0, 1.0, 3.0]))
    assert r.estimate == pytest.approx(4 / 6)
    assert r.se == pytest.approx(math.sqrt((4 / 9 + 25 / 9 + 1) / 36 * 1.5)) and r.df == 2
    # one event per user: per event = per user, the same t-test
    assert stats.event_paired(DIFF, np.ones(DIFF.size)).se == pytest.approx(stats.paired_t(DIFF).se)
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 7), rng.normal(1, 2, 9)
    two = stats.event_two_sample(a, np.ones(7), b, np.ones(9))
    welch = stats.welch_t(a, b)
    assert (two.estimate, two.se, two.df) == pytest.approx((welch.estimate, welch.se, welch.df))


def test_clustered_se_matches_the_spread_of_the_estimate_by_simulation():
    # heavy raters whose events share a user effect: the naive per-event SE is too small
    rng = np.random.default_rng(3)
    n = rng.integers(1, 120, 80).astype(float)  # (users,) events per user
    estimates, ses = [], []
    for _ in range(3_000):
        user_effect = rng.normal(0, 0.5, n.size)
        sums = n * user_effect + np.sqrt(n) * rng.standard_normal(n.size)
        r = stats.event_paired(sums, n)
        estimates.append(r.estimate)
        ses.append(r.se)
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.06)


def test_sign_flip_p_agrees_with_scipy_permutation_test_when_both_are_exact():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 10), rng.normal(0.4, 1, 10)
    scipy_p = sps.permutation_test(
        (b, a),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
    ).pvalue
    assert stats.sign_flip_p(b - a, n_permutations=2_000, seed=0) == pytest.approx(scipy_p)
