"""One day's A/B analysis: both designs, both units, every metric, day N alone and days 1..N.

What it is: an OFFLINE REPLAY. Both frozen models scored the same historical test events;
nobody was shown anything, and a "day" is a slice of the test split.
- Paired design (primary; both models on every user's events): the decision design by
  default. The user-randomised design is a SIMULATION of a live test (each user in one arm
  by a salted hash, seeing only that arm's model), with its own check (SRM).
- Two units, side by side: per-user means (every user weighs the same; the unit of
  randomisation, Kohavi et al. ch. 17-18) and per-event means with user-clustered
  delta-method SEs (every event weighs the same: heavy raters dominate). `abtest.unit` picks
  the decision's unit.
- Success metrics (`abtest.metrics`) form the Holm family; guardrails (`abtest.guardrails`)
  are non-inferiority checks outside it (Spotify's success/guardrail split).
- Day N alone: fixed-sample tests; Holm and BH across the success metrics. One look among
  20 and NOT the decision: reading them every day is the peeking the sequential analysis
  corrects for.
- Days 1..N: the same tests, plus the group-sequential look (`recsys.abtest.sequential`,
  in `recsys.abtest.stage`).
- Segments (cumulative, paired design): exploratory, no multiplicity correction.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from recsys.abtest import sequential as seq
from recsys.abtest import stats
from recsys.abtest.outcomes import LOWER_IS_BETTER, per_user
from recsys.config import AbtestParams

DESIGNS = ("paired", "randomised")


def all_metrics(params: AbtestParams) -> list[str]:
    """Success metrics, then guardrails: every outcome the analysis computes."""
    return list(params.metrics) + [m for m in params.guardrails if m not in params.metrics]


def _seed(params: AbtestParams, *parts: int) -> int:
    """A distinct, reproducible seed per (day, window, design, metric)."""
    return int(np.random.SeedSequence([params.seed, *parts]).generate_state(1)[0])


def better_arm(metric: str, estimate: float) -> str | None:
    """Which arm the estimate B - A favours ('A', 'B' or None when zero/undefined)."""
    if not np.isfinite(estimate) or estimate == 0:
        return None
    b_higher = estimate > 0
    return "B" if b_higher != (metric in LOWER_IS_BETTER) else "A"


def _sums(users: pd.DataFrame, metric: str, tag: str) -> np.ndarray:
    """(users,) each user's summed outcome: per-user mean x events."""
    return users[f"{metric}_{tag}"].to_numpy(float) * users["n_events"].to_numpy(float)


def _event_means(users: pd.DataFrame, metric: str) -> dict:
    n = users["n_events"].to_numpy(float).sum()
    if n == 0:
        return {"mean_a": None, "mean_b": None}
    return {f"mean_{t}": float(_sums(users, metric, t).sum() / n) for t in ("a", "b")}


def paired_event(users: pd.DataFrame, metric: str, alpha: float) -> dict:
    """Per-event paired difference with its user-clustered delta-method test."""
    diff = _sums(users, metric, "b") - _sums(users, metric, "a")
    result = stats.event_paired(diff, users["n_events"].to_numpy(float), alpha)
    return {**result.as_dict(), **_event_means(users, metric)}


def _bootstrap_note(n: int, params: AbtestParams, resample: bool) -> str:
    if not resample:
        return "not computed (A/A replay)"
    if n < params.bootstrap_min_users:
        return f"not computed: {n} users < abtest.bootstrap_min_users {params.bootstrap_min_users}"
    return ""


def paired_metric(
    users: pd.DataFrame, metric: str, params: AbtestParams, seed: int, resample: bool = True
) -> dict:
    """Per user: paired t, BCa bootstrap, sign-flip permutation, d_z, Wilcoxon; per event:
    the clustered delta-method test (`per_event`)."""
    a, b = users[f"{metric}_a"].to_numpy(float), users[f"{metric}_b"].to_numpy(float)
    diff = b - a  # (n_users,)
    t = stats.paired_t(diff, params.alpha)
    lo = hi = float("nan")
    note = _bootstrap_note(diff.size, params, resample)
    if not note:
        lo, hi = stats.bootstrap_ci(
            a, b, paired=True, n_resamples=params.n_bootstrap, seed=seed, alpha=params.alpha,
            min_users=params.bootstrap_min_users,
        )  # fmt: skip
    p_perm = float("nan")
    if resample:
        p_perm = stats.sign_flip_p(diff, n_permutations=params.n_permutations, seed=seed)
    return {
        **t.as_dict(),
        "mean_a": float(a.mean()) if a.size else None,
        "mean_b": float(b.mean()) if b.size else None,
        "bootstrap_ci": [lo, hi],
        "bootstrap_method": "BCa (as scipy.stats.bootstrap), users resampled in pairs",
        "bootstrap_note": note,
        "p_permutation": p_perm,
        "effect_size_dz": stats.effect_size_dz(diff),
        "wilcoxon_p_secondary": stats.wilcoxon_p(diff) if resample else float("nan"),
        "better": better_arm(metric, t.estimate),
        "per_event": paired_event(users, metric, params.alpha),
    }


def randomised_metric(
    users: pd.DataFrame,
    arm_b: np.ndarray,
    metric: str,
    params: AbtestParams,
    seed: int,
    resample: bool = True,
) -> dict:
    """Per user: Welch t, delta-method relative lift, two-sample BCa bootstrap; per event: the
    two-arm clustered delta-method test (`per_event`)."""
    a = users.loc[~arm_b, f"{metric}_a"].to_numpy(float)  # arm A users see model A
    b = users.loc[arm_b, f"{metric}_b"].to_numpy(float)
    welch = stats.welch_t(a, b, params.alpha)
    lift = stats.relative_lift_delta(a, b, params.alpha)
    lo = hi = float("nan")
    note = _bootstrap_note(min(a.size, b.size), params, resample)
    if not note:
        lo, hi = stats.bootstrap_ci(
            a, b, paired=False, n_resamples=params.n_bootstrap, seed=seed, alpha=params.alpha,
            min_users=params.bootstrap_min_users,
        )  # fmt: skip
    n = users["n_events"].to_numpy(float)
    event = stats.event_two_sample(
        _sums(users, metric, "a")[~arm_b], n[~arm_b], _sums(users, metric, "b")[arm_b], n[arm_b],
        params.alpha,
    )  # fmt: skip
    means = {
        "mean_a": float(_sums(users, metric, "a")[~arm_b].sum() / n[~arm_b].sum())
        if n[~arm_b].sum() else None,
        "mean_b": float(_sums(users, metric, "b")[arm_b].sum() / n[arm_b].sum())
        if n[arm_b].sum() else None,
    }  # fmt: skip
    return {
        **welch.as_dict(),
        "mean_a": float(a.mean()) if a.size else None,
        "mean_b": float(b.mean()) if b.size else None,
        "n_users_a": int(a.size),
        "n_users_b": int(b.size),
        "bootstrap_ci": [lo, hi],
        "bootstrap_note": note,
        "relative_lift": lift.as_dict(),
        "better": better_arm(metric, welch.estimate),
        "per_event": {**event.as_dict(), **means},
    }


def _adjust(block: dict, metrics: list[str]) -> None:
    """Holm and BH adjusted p-values across the success metrics, in both units."""
    for unit_of in (lambda r: r, lambda r: r["per_event"]):
        raw = np.array([unit_of(block[m])["p_value"] for m in metrics], dtype=float)
        holm, bh = stats.holm(raw), stats.benjamini_hochberg(raw)
        for m, h, b in zip(metrics, holm, bh, strict=True):
            unit_of(block[m]).update(p_value_holm=float(h), p_value_bh=float(b))


def analyse_window(
    outcomes: pd.DataFrame,
    arm_of: pd.Series,
    params: AbtestParams,
    seed_parts: tuple[int, ...],
    resample: bool = True,
) -> dict:
    """Both designs and units for every metric on one window of events (per-user first)."""
    metrics = all_metrics(params)
    users = per_user(outcomes, metrics)
    arm_b = users["user_id"].map(arm_of).to_numpy(bool)
    n_events = users["n_events"].to_numpy()
    paired, randomised = {}, {}
    for i, metric in enumerate(metrics):
        role = "success" if metric in params.metrics else "guardrail"
        paired[metric] = paired_metric(
            users, metric, params, _seed(params, *seed_parts, 0, i), resample
        )
        randomised[metric] = randomised_metric(
            users, arm_b, metric, params, _seed(params, *seed_parts, 1, i), resample
        )
        paired[metric].update(role=role, n_users=len(users), n_events=int(n_events.sum()))
        randomised[metric].update(role=role, n_users=len(users), n_events=int(n_events.sum()))
        randomised[metric].update(
            n_events_a=int(n_events[~arm_b].sum()), n_events_b=int(n_events[arm_b].sum())
        )
    _adjust(paired, params.metrics)
    _adjust(randomised, params.metrics)
    untested = sorted(
        {f"{design}: {r['note']}" for design, block in (("paired", paired),
         ("randomised", randomised)) for r in block.values() if r["note"]}
    )  # fmt: skip
    return {
        "n_users": len(users),
        "n_events": int(n_events.sum()),
        "n_users_a": int((~arm_b).sum()),
        "n_users_b": int(arm_b.sum()),
        "untested": untested,
        "paired": paired,
        "randomised": {"metrics": randomised},
        "users": users,
        "arm_b": arm_b,
    }


def segment_analysis(users: pd.DataFrame, segments: dict, params: AbtestParams) -> dict:
    """Paired design per segment group, both units, and the interaction test per metric.

    Interaction (does the effect differ between the groups? estimate = first group's effect
    minus the second's, e.g. warm - cold): per user, Welch t of the
    groups' per-user differences; per event, z of the difference of the two groups' clustered
    estimates. Exploratory: no multiplicity correction, not sequential.
    """
    out = {}
    for name, (labels, first) in segments.items():
        groups = {labels[0]: users[first], labels[1]: users[~first]}
        block = {}
        for metric in all_metrics(params):
            per_group = {}
            for label, g in groups.items():
                diff = (g[f"{metric}_b"] - g[f"{metric}_a"]).to_numpy(float)
                per_group[label] = {
                    "n_users": len(g),
                    "n_events": int(g["n_events"].sum()),
                    "per_user": stats.paired_t(diff, params.alpha).as_dict(),
                    "per_event": paired_event(g, metric, params.alpha),
                }
            d = [(g[f"{metric}_b"] - g[f"{metric}_a"]).to_numpy(float) for g in groups.values()]
            e = [per_group[label]["per_event"] for label in labels]
            block[metric] = {
                **per_group,
                "interaction_per_user": stats.welch_t(d[1], d[0], params.alpha).as_dict(),
                "interaction_per_event": _z_difference(e[0], e[1]),
            }
        out[name] = {"groups": list(labels), "metrics": block}
    return out


def _z_difference(first: dict, second: dict) -> dict:
    """first - second of two independent estimates with SEs, two-sided normal p."""
    from scipy import stats as sps

    diff = first["estimate"] - second["estimate"]
    se = float(np.hypot(first["se"], second["se"]))
    ok = np.isfinite(diff) and np.isfinite(se) and se > 0
    p = float(2 * sps.norm.sf(abs(diff) / se)) if ok else float("nan")
    return {"test": "z test of the difference of clustered estimates", "estimate": diff,
            "se": se, "p_value": p}  # fmt: skip


def seed_analysis(
    outcomes: pd.DataFrame, extra_a: list[pd.DataFrame], extra_b: list[pd.DataFrame],
    params: AbtestParams,
) -> dict:  # fmt: skip
    """B vs A as models, not checkpoints: per-user paired test on seed-averaged outcomes and
    the spread of the paired estimate over every (seed of A, seed of B) pair.

    `extra_a` / `extra_b`: other seeds' per-event outcomes (columns = metrics), row-aligned
    with `outcomes`, whose `<metric>_a` / `_b` columns are the main checkpoints.
    """
    metrics = all_metrics(params)
    seeds_a = [outcomes[[f"{m}_a" for m in metrics]].set_axis(metrics, axis=1), *extra_a]
    seeds_b = [outcomes[[f"{m}_b" for m in metrics]].set_axis(metrics, axis=1), *extra_b]
    frame = outcomes[["user_id", "day"]].copy()
    for metric in metrics:
        frame[f"{metric}_a"] = np.mean([s[metric].to_numpy() for s in seeds_a], axis=0)
        frame[f"{metric}_b"] = np.mean([s[metric].to_numpy() for s in seeds_b], axis=0)
    users = per_user(frame, metrics)
    result = {}
    for metric in metrics:
        diff = (users[f"{metric}_b"] - users[f"{metric}_a"]).to_numpy(float)
        pairs = []
        for sa, sb in itertools.product(seeds_a, seeds_b):
            pair = pd.DataFrame({"user_id": outcomes["user_id"], "d": sb[metric] - sa[metric]})
            pair_diff = pair.groupby("user_id")["d"].mean().to_numpy(float)
            t = stats.paired_t(pair_diff, params.alpha)
            pairs.append((t.estimate, t.p_value))
        estimates = np.array([e for e, _ in pairs])
        result[metric] = {
            "seed_averaged": stats.paired_t(diff, params.alpha).as_dict(),
            "pair_estimates": estimates.tolist(),
            "pair_min": float(estimates.min()),
            "pair_max": float(estimates.max()),
            "pair_sd": float(estimates.std(ddof=1)) if estimates.size > 1 else None,
            "pairs_significant_b_better": int(sum(
                p <= params.alpha and better_arm(metric, e) == "B" for e, p in pairs)),
            "pairs_significant_a_better": int(sum(
                p <= params.alpha and better_arm(metric, e) == "A" for e, p in pairs)),
        }  # fmt: skip
    return {
        "n_seeds_a": len(seeds_a),
        "n_seeds_b": len(seeds_b),
        "test": "paired t on per-user means of the seed-averaged per-event outcomes",
        "metrics": result,
    }


def _look_z(
    a: np.ndarray, b: np.ndarray, n: np.ndarray, arm_b: np.ndarray, design: str, unit: str
) -> float:
    """The look's z statistic (t converted at equal p) from per-user means under A and B."""
    if unit == "user":
        t = stats.paired_t(b - a) if design == "paired" else stats.welch_t(a[~arm_b], b[arm_b])
    elif design == "paired":
        t = stats.event_paired((b - a) * n, n)
    else:
        t = stats.event_two_sample(a[~arm_b] * n[~arm_b], n[~arm_b], b[arm_b] * n[arm_b], n[arm_b])
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
    """(design -> (n_metrics, day)) z of the cumulative analysis at every look 1..day, in the
    primary unit, for the success metrics then the guardrails (all_metrics order)."""
    metrics = all_metrics(params)
    columns = [f"{m}_{tag}" for m in metrics for tag in ("a", "b")]
    user_ids, means, n = cumulative_user_means(outcomes, columns, day)
    arm_b_all = arm_of.reindex(user_ids).to_numpy(bool)
    z = {design: np.full((len(metrics), day), np.nan) for design in DESIGNS}
    for look in range(day):
        seen = n[:, look] > 0
        arm_b, counts = arm_b_all[seen], n[seen, look]
        for i in range(len(metrics)):
            a, b = means[seen, look, 2 * i], means[seen, look, 2 * i + 1]
            for design in DESIGNS:
                z[design][i, look] = _look_z(a, b, counts, arm_b, design, params.unit)
    return z
