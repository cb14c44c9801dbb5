"""Fixed-sample A/B statistics on per-user arrays: pure functions, no I/O.

The unit of analysis is the user (Kohavi, Tang & Xu, *Trustworthy Online Controlled
Experiments*, ch. 17-18): callers aggregate each user's events first and pass one value per
user. Every function takes numpy arrays and returns plain floats in a `TestResult`.

Paired design (both models score every user):
- paired t-test on the per-user differences B - A;
- BCa bootstrap CI of the mean difference: scipy.stats.bootstrap's BCa (paired=True),
  vectorised for the mean (see `bootstrap_ci`);
- sign-flip permutation test, p = (b + 1) / (m + 1) (Smyth & Phipson 2010), exact when
  every sign vector can be enumerated;
- effect size d_z = mean(diff) / sd(diff): with many users almost everything is
  "significant", so the size matters;
- Wilcoxon signed-rank only as a labelled secondary: it tests a different hypothesis (a
  symmetric shift of the median difference), and Smucker, Allan & Carterette (CIKM 2007) and
  Ihemelandu & Ekstrand (SIGIR 2023) show it misleads with thousands of users.

User-randomised design (each user sees one arm): Welch t-test; relative lift with the
delta-method variance of GrowthBook's gbstats, Var = σ_B²/(μ_A² n_B) + σ_A² μ_B²/(μ_A⁴ n_A);
two-sample BCa bootstrap; a sample-ratio-mismatch check by the exact binomial test of the arm
counts, alarm at p < 0.001 (the threshold of GrowthBook and Eppo; exact rather than χ² because
a day's arms can hold 3 and 27 users, where the χ² tail is too light).

Per-event metrics (the second unit): a ratio of sums over users, Σ_u y_u / Σ_u n_u, with the
delta-method standard error clustered by user (Deng, Knoblich & Lu 2018; GrowthBook's ratio
metrics): Var ≈ Σ_u (y_u - r n_u)² / (Σ_u n_u)² · U/(U-1).

Small samples: zero variance is no t-test (the paired case uses the exact sign-flip p, the
others say "not testable"); bootstrap CIs need `min_users` per arm.

Multiple metrics: Holm-Bonferroni (FWER) and Benjamini-Hochberg (FDR,
`scipy.stats.false_discovery_control`). Sequential looks live in `recsys.abtest.sequential`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

SRM_ALARM_P = 0.001  # GrowthBook / Eppo: a sample-ratio mismatch alarm fires below this p


@dataclass(frozen=True)
class TestResult:
    """An estimate with its CI, two-sided p-value, test statistic and standard error."""

    test: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float = float("nan")
    se: float = float("nan")
    df: float = float("nan")
    note: str = ""  # why a figure is missing or exact ("" when the test ran as named)

    def as_dict(self) -> dict:
        """Plain dict (NaN stays NaN; the writer turns it into null)."""
        return asdict(self)


NAN = float("nan")


def _t_result(test: str, estimate: float, se: float, df: float, alpha: float) -> TestResult:
    """t-based result from an estimate, its SE and degrees of freedom."""
    if se == 0:
        note = "not testable: zero variance"
        return TestResult(test, estimate, NAN, NAN, NAN, NAN, 0.0, df, note)
    if not np.isfinite(se) or not np.isfinite(df) or df <= 0:
        return TestResult(test, estimate, NAN, NAN, NAN, NAN, se, df)
    t = estimate / se
    half = sps.t.ppf(1 - alpha / 2, df) * se
    p = float(2 * sps.t.sf(abs(t), df))
    return TestResult(test, estimate, estimate - half, estimate + half, p, t, se, df)


def paired_t(diff: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Paired t-test of mean(diff) = 0, diff = per-user B - A; t-interval for the mean."""
    diff = np.asarray(diff, dtype=float)
    n = diff.size
    if n < 2:
        note = f"not testable: {n} user(s)"
        return TestResult(
            "paired t-test", float(diff.mean()) if n else NAN, NAN, NAN, NAN, note=note
        )
    if np.ptp(diff) == 0:  # every user differs by the same d: the t statistic is undefined
        # exact sign-flip p: only the all-plus and all-minus sign vectors reach |Σd| (d ≠ 0)
        p = 1.0 if diff[0] == 0 else min(1.0, 2.0 / 2.0**n)
        note = "zero variance: exact sign-flip p, no interval"
        return TestResult("exact sign-flip", float(diff[0]), NAN, NAN, p, NAN, 0.0, n - 1, note)
    se = float(diff.std(ddof=1) / np.sqrt(n))
    return _t_result("paired t-test", float(diff.mean()), se, n - 1, alpha)


def effect_size_dz(diff: np.ndarray) -> float:
    """Cohen's d_z: mean of the paired differences over their standard deviation."""
    diff = np.asarray(diff, dtype=float)
    if diff.size < 2:
        return NAN
    sd = diff.std(ddof=1)
    return float(diff.mean() / sd) if sd > 0 else NAN


def welch_t(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Welch t-test of mean(b) - mean(a) with Welch-Satterthwaite degrees of freedom."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        estimate = float(b.mean() - a.mean()) if a.size and b.size else NAN
        note = f"not testable: {a.size} user(s) in A, {b.size} in B (2 needed in each)"
        return TestResult("Welch t-test", estimate, NAN, NAN, NAN, note=note)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size  # squared SEs of the means
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else NAN
    return _t_result("Welch t-test", float(b.mean() - a.mean()), se, df, alpha)


def relative_lift_delta(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Relative lift mean(b)/mean(a) - 1 with the delta-method SE (GrowthBook gbstats), z-test."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    name = "relative lift, delta method"
    if a.size < 2 or b.size < 2 or a.mean() == 0:
        return TestResult(name, NAN, NAN, NAN, NAN, note="not testable: < 2 users or mean A 0")
    mu_a, mu_b = a.mean(), b.mean()
    var = b.var(ddof=1) / (mu_a**2 * b.size) + a.var(ddof=1) * mu_b**2 / (mu_a**4 * a.size)
    lift, se = float(mu_b / mu_a - 1), float(np.sqrt(var))
    if se == 0:
        return TestResult(name, lift, NAN, NAN, NAN, NAN, 0.0, note="not testable: zero variance")
    z = lift / se
    half = sps.norm.ppf(1 - alpha / 2) * se
    p = float(2 * sps.norm.sf(abs(z)))
    return TestResult("relative lift, delta method", lift, lift - half, lift + half, p, z, se)


def bootstrap_ci(
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    n_resamples: int,
    seed: int,
    alpha: float = 0.05,
    min_users: int = 2,
) -> tuple[float, float]:
    """BCa bootstrap CI of mean(b) - mean(a); paired resamples users, else each arm apart.

    (NaN, NaN) below `min_users` per arm: with a handful of users the BCa ends jump with
    tiny input changes (the resamples take few distinct values).

    The BCa interval of scipy.stats.bootstrap (Efron & Tibshirani 1993, §14.3), computed
    for the mean with (n_resamples, n_users) index matrices and the closed-form jackknife:
    scipy's generic jackknife is O(n²), minutes at 16,000 users. Checked against
    scipy.stats.bootstrap and a hand-written BCa in tests/test_abtest_stats.py.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(a.size, b.size) < max(2, min_users):
        return NAN, NAN
    estimate = float(b.mean() - a.mean())
    rng = np.random.default_rng(seed)
    if paired:
        diff = b - a
        if np.ptp(diff) == 0:  # every resample gives the same value; BCa is undefined
            return estimate, estimate
        boot = _resampled_means(diff, n_resamples, rng)
        jackknife = [_jackknife_means(diff)]
    else:
        if max(np.ptp(a), np.ptp(b)) == 0:
            return estimate, estimate
        boot = _resampled_means(b, n_resamples, rng) - _resampled_means(a, n_resamples, rng)
        jackknife = [-_jackknife_means(a), _jackknife_means(b)]  # θ up to a constant
    return _bca_ends(boot, estimate, jackknife, alpha)


def _resampled_means(values: np.ndarray, n_resamples: int, rng) -> np.ndarray:
    """(n_resamples,) means of bootstrap resamples, drawn in chunks of (rows, n) indices."""
    n, out = values.size, np.empty(n_resamples)
    rows = max(1, 2_000_000 // n)  # bounds the index matrix to ~16 MB
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def _jackknife_means(values: np.ndarray) -> np.ndarray:
    """(n,) leave-one-out means, in closed form."""
    return (values.sum() - values) / (values.size - 1)


def _bca_ends(
    boot: np.ndarray, estimate: float, jackknife: list[np.ndarray], alpha: float
) -> tuple[float, float]:
    """BCa interval ends from the bootstrap distribution and per-sample jackknife θ values."""
    below = (np.mean(boot < estimate) + np.mean(boot <= estimate)) / 2  # as scipy does
    z0 = sps.norm.ppf(below)
    # acceleration; for two samples the jackknife runs over each in turn (as in scipy)
    u = np.concatenate([j.mean() - j for j in jackknife])
    denominator = 6 * np.sum(u**2) ** 1.5
    accel = float(np.sum(u**3) / denominator) if denominator > 0 else 0.0
    ends = []
    for q in (alpha / 2, 1 - alpha / 2):
        zq = z0 + sps.norm.ppf(q)
        ends.append(float(np.percentile(boot, 100 * sps.norm.cdf(z0 + zq / (1 - accel * zq)))))
    return ends[0], ends[1]


def sign_flip_p(diff: np.ndarray, *, n_permutations: int, seed: int) -> float:
    """Two-sided sign-flip permutation p-value of mean(diff) = 0.

    Exact (every sign vector) when 2**n <= n_permutations; otherwise m random sign vectors
    and p = (b + 1) / (m + 1), b = how many are at least as extreme (Smyth & Phipson 2010).
    """
    diff = np.asarray(diff, dtype=float)
    n = diff.size
    if n == 0:
        return NAN
    observed = abs(diff.sum())
    tolerance = 1e-9 * max(1.0, np.abs(diff).sum())  # ties with the observed sum count
    if n <= 20 and 2**n <= n_permutations:
        signs = np.array(list(itertools.product((1, -1), repeat=n)), dtype=float)  # (2^n, n)
        return float(np.mean(np.abs(signs @ diff) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # rows of the (m, n) sign matrix held at once
    extreme = 0
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8) * 2 - 1  # (rows, n) ±1
        extreme += int(np.sum(np.abs(signs @ diff) >= observed - tolerance))
    return (extreme + 1) / (n_permutations + 1)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Wilcoxon signed-rank p-value (secondary: tests a median shift, not the mean)."""
    diff = np.asarray(diff, dtype=float)
    if np.count_nonzero(diff) < 2:
        return NAN
    return float(sps.wilcoxon(diff, zero_method="wilcox").pvalue)


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check of the arm counts (exact binomial test)."""

    n_a: int
    n_b: int
    expected_share_b: float
    p_value: float
    alarm: bool
    test: str = "exact binomial"

    def as_dict(self) -> dict:
        """Plain dict."""
        return asdict(self)


def srm_check(n_a: int, n_b: int, share_b: float = 0.5, threshold: float = SRM_ALARM_P):
    """Exact two-sided binomial test of n_b out of n_a + n_b against the designed share."""
    total = n_a + n_b
    if total == 0:
        return SrmResult(n_a, n_b, share_b, NAN, False)
    p = float(sps.binomtest(n_b, total, share_b).pvalue)
    return SrmResult(n_a, n_b, share_b, p, bool(p < threshold))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    steps = (m - np.arange(m)) * p[order]  # (m - i + 1) p_(i), i = 1..m
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values via scipy (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        adjusted[ok] = sps.false_discovery_control(p[ok], method="bh")
    return adjusted


def _cluster_var(y: np.ndarray, n: np.ndarray, ratio: float) -> float:
    """Delta-method variance of Σy / Σn with users as clusters (CR1 small-sample factor)."""
    users = y.size
    return float(np.sum((y - ratio * n) ** 2) / n.sum() ** 2 * users / (users - 1))


def event_paired(diff_sums: np.ndarray, n: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Per-event mean difference Σ_u d_u / Σ_u n_u (d_u: user u's summed B - A), clustered SE.

    t with U - 1 degrees of freedom (U users, the clusters).
    """
    d, n = np.asarray(diff_sums, dtype=float), np.asarray(n, dtype=float)
    name = "per-event, paired, user-clustered delta method"
    if d.size < 2:
        return TestResult(name, NAN, NAN, NAN, NAN, note=f"not testable: {d.size} user(s)")
    ratio = float(d.sum() / n.sum())
    return _t_result(name, ratio, float(np.sqrt(_cluster_var(d, n, ratio))), d.size - 1, alpha)


def event_two_sample(
    sums_a: np.ndarray, n_a: np.ndarray, sums_b: np.ndarray, n_b: np.ndarray, alpha: float = 0.05
) -> TestResult:
    """Per-event mean of arm B minus arm A (each Σy / Σn over its users), clustered SEs,
    Welch-Satterthwaite degrees of freedom over the users of each arm."""
    name = "per-event, two arms, user-clustered delta method"
    ya, yb = np.asarray(sums_a, dtype=float), np.asarray(sums_b, dtype=float)
    if ya.size < 2 or yb.size < 2:
        note = f"not testable: {ya.size} user(s) in A, {yb.size} in B (2 needed in each)"
        return TestResult(name, NAN, NAN, NAN, NAN, note=note)
    ra, rb = float(ya.sum() / np.sum(n_a)), float(yb.sum() / np.sum(n_b))
    va = _cluster_var(ya, np.asarray(n_a, dtype=float), ra)
    vb = _cluster_var(yb, np.asarray(n_b, dtype=float), rb)
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (ya.size - 1) + vb**2 / (yb.size - 1)) if se > 0 else NAN
    return _t_result(name, rb - ra, se, df, alpha)
