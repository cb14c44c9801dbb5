"""One day's A/B analysis: both designs, every metric, day N alone and days 1..N, decision.

- Paired design (offline: both models score every user) is the decision design by default;
  the user-randomised design replays what a live test would see (each user in one arm by a
  salted hash) with its own checks (SRM, Welch, delta-method lift, CUPED).
- Day N alone: fixed-sample tests; Holm and BH across metrics. These are one look among 20
  and are NOT the decision: reading them every day is exactly the peeking the sequential
  analysis corrects for.
- Days 1..N: the same tests, plus the group-sequential look (`recsys.abtest.sequential`):
  repeated p-values, Holm across metrics on them, repeated confidence intervals. The daily
  decision is: metric significant iff its Holm-adjusted repeated p-value ≤ alpha.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.abtest import sequential as seq
from recsys.abtest import stats
from recsys.abtest.outcomes import LOWER_IS_BETTER, per_user
from recsys.config import AbtestParams

DESIGNS = ("paired", "randomised")


def _seed(params: AbtestParams, *parts: int) -> int:
    """A distinct, reproducible seed per (day, window, design, metric)."""
    return int(np.random.SeedSequence([params.seed, *parts]).generate_state(1)[0])


def better_arm(metric: str, estimate: float) -> str | None:
    """Which arm the estimate B - A favours ('A', 'B' or None when zero/undefined)."""
    if not np.isfinite(estimate) or estimate == 0:
        return None
    b_higher = estimate > 0
    return "B" if b_higher != (metric in LOWER_IS_BETTER) else "A"


def paired_metric(users: pd.DataFrame, metric: str, params: AbtestParams, seed: int) -> dict:
    """Paired t, BCa bootstrap, sign-flip permutation, d_z and Wilcoxon for one metric."""
    a, b = users[f"{metric}_a"].to_numpy(float), users[f"{metric}_b"].to_numpy(float)
    diff = b - a  # (n_users,)
    t = stats.paired_t(diff, params.alpha)
    lo, hi = stats.bootstrap_ci(
        a, b, paired=True, n_resamples=params.n_bootstrap, seed=seed, alpha=params.alpha
    )
    return {
        **t.as_dict(),
        "mean_a": float(a.mean()) if a.size else None,
        "mean_b": float(b.mean()) if b.size else None,
        "bootstrap_ci": [lo, hi],
        "bootstrap_method": "BCa (as scipy.stats.bootstrap), users resampled in pairs",
        "p_permutation": stats.sign_flip_p(diff, n_permutations=params.n_permutations, seed=seed),
        "effect_size_dz": stats.effect_size_dz(diff),
        "wilcoxon_p_secondary": stats.wilcoxon_p(diff),
        "better": better_arm(metric, t.estimate),
    }


def randomised_metric(
    users: pd.DataFrame, arm_b: np.ndarray, metric: str, params: AbtestParams, seed: int
) -> dict:
    """Welch t, delta-method relative lift and two-sample BCa bootstrap for one metric."""
    a = users.loc[~arm_b, f"{metric}_a"].to_numpy(float)  # arm A users see model A
    b = users.loc[arm_b, f"{metric}_b"].to_numpy(float)
    welch = stats.welch_t(a, b, params.alpha)
    lift = stats.relative_lift_delta(a, b, params.alpha)
    lo, hi = stats.bootstrap_ci(
        a, b, paired=False, n_resamples=params.n_bootstrap, seed=seed, alpha=params.alpha
    )
    return {
        **welch.as_dict(),
        "mean_a": float(a.mean()) if a.size else None,
        "mean_b": float(b.mean()) if b.size else None,
        "n_users_a": int(a.size),
        "n_users_b": int(b.size),
        "bootstrap_ci": [lo, hi],
        "relative_lift": lift.as_dict(),
        "better": better_arm(metric, welch.estimate),
    }


def cuped_metric(
    users: pd.DataFrame, arm_b: np.ndarray, pre: pd.DataFrame, metric: str, alpha: float
) -> dict:
    """CUPED-adjusted Welch test (covariate: the user's pre-period mean over both models)."""
    y = np.where(arm_b, users[f"{metric}_b"], users[f"{metric}_a"]).astype(float)
    result = stats.cuped(y, pre[f"{metric}_pre"].to_numpy(float), arm_b)
    welch = stats.welch_t(result.adjusted[~arm_b], result.adjusted[arm_b], alpha)
    return {
        **welch.as_dict(),
        "test": "Welch t-test on CUPED-adjusted outcomes",
        "theta": result.theta,
        "coverage": result.coverage,
        "variance_reduction": result.variance_reduction,
    }


def _adjust(block: dict, key: str, metrics: list[str]) -> None:
    """Add Holm and BH adjusted versions of block[metric][key] across the metrics."""
    raw = np.array([block[m][key] for m in metrics], dtype=float)
    for m, holm, bh in zip(metrics, stats.holm(raw), stats.benjamini_hochberg(raw), strict=True):
        block[m][f"{key}_holm"] = float(holm)
        block[m][f"{key}_bh"] = float(bh)


def analyse_window(
    outcomes: pd.DataFrame,
    arm_of: pd.Series,
    params: AbtestParams,
    seed_parts: tuple[int, ...],
    pre: pd.DataFrame | None = None,
) -> dict:
    """Both designs for every metric on one window of events (per-user aggregates first)."""
    users = per_user(outcomes, params.metrics)
    arm_b = users["user_id"].map(arm_of).to_numpy(bool)
    srm = stats.srm_check(int((~arm_b).sum()), int(arm_b.sum()), params.share_b)
    paired, randomised = {}, {}
    for i, metric in enumerate(params.metrics):
        paired[metric] = paired_metric(users, metric, params, _seed(params, *seed_parts, 0, i))
        rnd = randomised_metric(users, arm_b, metric, params, _seed(params, *seed_parts, 1, i))
        if pre is not None:
            rnd["cuped"] = cuped_metric(users, arm_b, pre, metric, params.alpha)
        randomised[metric] = rnd
        n_events = users["n_events"].to_numpy()
        paired[metric].update(n_users=len(users), n_events=int(n_events.sum()))
        rnd.update(n_users=len(users), n_events=int(n_events.sum()))
        rnd.update(n_events_a=int(n_events[~arm_b].sum()), n_events_b=int(n_events[arm_b].sum()))
    _adjust(paired, "p_value", params.metrics)
    _adjust(randomised, "p_value", params.metrics)
    return {
        "n_users": len(users),
        "n_events": int(users["n_events"].sum()),
        "paired": paired,
        "randomised": {"srm": srm.as_dict(), "metrics": randomised},
        "users": users,
        "arm_b": arm_b,
    }


def _look_z(a: np.ndarray, b: np.ndarray, arm_b: np.ndarray, design: str) -> float:
    """The look's z statistic (t converted at equal p) from per-user means under A and B."""
    paired = design == "paired"
    t = stats.paired_t(b - a) if paired else stats.welch_t(a[~arm_b], b[arm_b])
    return seq.z_from_t(t.statistic, t.df)


def cumulative_user_means(outcomes: pd.DataFrame, columns: list[str], day: int):
    """Per-user means of `columns` over days 1..look for every look, from one groupby.

    Returns user ids (U,), means (U, day, C) and event counts (U, day); a user not yet seen
    at a look has count 0 (and mean NaN).
    """
    grouped = outcomes.groupby(["user_id", "day"])
    sums, counts = grouped[columns].sum(), grouped.size()
    user_ids, user_pos = np.unique(sums.index.get_level_values(0), return_inverse=True)
    day_pos = sums.index.get_level_values(1).to_numpy() - 1
    total = np.zeros((user_ids.size, day, len(columns)))  # (U, days, C)
    n = np.zeros((user_ids.size, day))  # (U, days)
    total[user_pos, day_pos] = sums.to_numpy()
    n[user_pos, day_pos] = counts.to_numpy()
    total, n = np.cumsum(total, axis=1), np.cumsum(n, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return user_ids, total / n[:, :, None], n


def look_statistics(
    outcomes: pd.DataFrame, arm_of: pd.Series, params: AbtestParams, day: int
) -> dict[str, np.ndarray]:
    """(design -> (n_metrics, day)) z of the cumulative analysis at every look 1..day."""
    columns = [f"{m}_{tag}" for m in params.metrics for tag in ("a", "b")]
    user_ids, means, n = cumulative_user_means(outcomes, columns, day)
    arm_b_all = arm_of.reindex(user_ids).to_numpy(bool)
    z = {design: np.full((len(params.metrics), day), np.nan) for design in DESIGNS}
    for look in range(day):
        seen = n[:, look] > 0
        arm_b = arm_b_all[seen]
        for i in range(len(params.metrics)):
            a, b = means[seen, look, 2 * i], means[seen, look, 2 * i + 1]
            for design in DESIGNS:
                z[design][i, look] = _look_z(a, b, arm_b, design)
    return z
