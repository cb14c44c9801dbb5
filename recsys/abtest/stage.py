"""`abtest@N` stage: does model B beat model A after day N, honestly under daily looks?

    python -m recsys.abtest.stage --day 3 --batches batches \\
        --predictions-a artifacts/predictions/ncf.parquet \\
        --predictions-b artifacts/predictions/ss4rec.parquet \\
        --out-metrics metrics/abtest/day_03.json --out-users artifacts/abtest/day_03.parquet

Reads batches/day_01..NN.parquet, joins them with both prediction files, aggregates per user
and writes (a) the JSON with day N alone and days 1..N for both designs, every metric, raw and
adjusted p-values, CIs, the sequential look and the decision; (b) one parquet row per user
of day N with the per-user outcomes under A and B and the arm the hash assigned.

DVC cannot list "batches 1..N" as the deps of one foreach item, so day N depends on its own
batch and on day N-1's JSON, which records the md5 of every batch it used; this stage checks
those md5s against the files it reads (the JSON beside --out-metrics), so a changed earlier
batch reruns every later day, in order.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.abtest import sequential as seq
from recsys.abtest import stats
from recsys.abtest.analysis import (
    DESIGNS,
    all_metrics,
    analyse_window,
    better_arm,
    look_statistics,
    seed_analysis,
    segment_analysis,
)
from recsys.abtest.outcomes import (
    LOWER_IS_BETTER,
    assign_arm_b,
    batch_path,
    event_outcomes,
    read_batch,
    read_predictions,
    seed_outcomes,
    serve,
    train_users,
    user_days,
    user_segments,
)
from recsys.config import AbtestParams
from recsys.errors import RecsysError
from recsys.io import md5_file, write_json, write_parquet


def load_outcomes(
    batches_dir: Path, day: int, predictions: tuple[Path, Path], metrics: list[str]
) -> pd.DataFrame:
    """Per-event outcomes under A and B for every event of days 1..day."""
    events = pd.concat([read_batch(batches_dir, d) for d in range(1, day + 1)], ignore_index=True)
    preds_a, preds_b = (read_predictions(p) for p in predictions)
    return event_outcomes(serve(events, preds_a, preds_b, predictions), metrics)


def input_md5s(batches_dir: Path, day: int, predictions: tuple[Path, Path]) -> dict[str, str]:
    """md5 of every file this look read, keyed by path."""
    paths = [batch_path(batches_dir, d) for d in range(1, day + 1)] + list(predictions)
    return {str(p): md5_file(p) for p in paths}


def check_chain(previous_json: Path, md5s: dict[str, str], day: int) -> None:
    """Day N-1's result must exist and have read the same earlier batches we read now."""
    import json

    if day == 1:
        return
    if not previous_json.is_file():
        raise RecsysError(f"{previous_json}: not found; run abtest@{day - 1} first")
    recorded = json.loads(previous_json.read_text())["inputs"]
    for path, md5 in recorded.items():
        if path.endswith(".parquet") and "day_" in Path(path).name and md5s.get(path) != md5:
            raise RecsysError(
                f"{path} changed since {previous_json} was computed; "
                f"run `dvc repro abtest@{day - 1}` first"
            )


def design_boundaries(info: np.ndarray, day: int, params: AbtestParams) -> dict:
    """What both designs share at this look (same information): the boundaries at alpha and
    at alpha/m over looks 1..day, and the detectable E[Z] at Holm's strictest level."""
    spend = np.arange(1, day + 1) / params.n_days
    levels = np.array([params.alpha, params.alpha / len(params.metrics)])
    table = seq.boundary_table(info, spend, levels, params.spending, params.rho)
    return {
        "marginal": table[0, -1],
        "family": table[1, -1],
        "detectable_z": seq.detectable_z(info, table[1], params.power),
    }


def sequential_block(
    z: np.ndarray, info: np.ndarray, window: dict, design: str, params: AbtestParams, bounds: dict
) -> dict:
    """Success metrics at the last look: repeated p-values, Holm, intervals, MDE.

    - decision: Holm across the success metrics on the repeated p-values;
    - `repeated_ci`: per metric at the nominal 1 - alpha, valid under the daily looks but NOT
      adjusted for multiplicity (so it can exclude 0 where Holm does not reject);
    - `simultaneous_ci`: at 1 - alpha/m (Bonferroni): all m cover together with >= 1 - alpha;
    - `mde`: the effect the design (these looks, Holm's strictest level alpha/m) detects with
      probability `abtest.power`, and the users/days it would need for `abtest.target_lift`.
    """
    day, metrics, alpha = z.shape[1], params.metrics, params.alpha
    m = len(metrics)
    spend = np.arange(1, day + 1) / params.n_days
    holm_grid = tuple(alpha / k for k in range(1, m + 1))
    running = seq.repeated_p_values(z[:m], info, spend, params.spending, params.rho, holm_grid)
    adjusted_by_look = np.apply_along_axis(stats.holm, 0, running)  # (metrics, looks)
    c_marginal, c_family, detectable = bounds["marginal"], bounds["family"], bounds["detectable_z"]
    block = {}
    for i, metric in enumerate(metrics):
        fixed = _fixed_result(window, design, metric, params.unit)
        est, se, df = fixed["estimate"], fixed["se"], fixed["df"]
        half = seq.t_boundary(c_marginal, df) * se
        half_family = seq.t_boundary(c_family, df) * se
        significant = bool(adjusted_by_look[i, -1] <= alpha)
        at_min = int(np.nanargmin(np.where(np.isnan(running[i]), np.inf, running[i])))
        since = np.flatnonzero(adjusted_by_look[i] <= alpha)
        block[metric] = {
            "z": z[i, -1],
            "repeated_p": running[i, -1],
            "repeated_p_holm": adjusted_by_look[i, -1],
            "significant": significant,
            "significant_since_day": int(since[0]) + 1 if since.size else None,
            "winner": better_arm(metric, z[i, at_min]) if significant else None,
            "estimate": est,
            "mean_a": fixed["mean_a"],
            "repeated_ci": [est - half, est + half],
            "repeated_ci_level": 1 - alpha,
            "simultaneous_ci": [est - half_family, est + half_family],
            "simultaneous_ci_level": 1 - alpha / m,
            **power_figures(detectable, se, fixed, window["n_users"], day, params),
        }
    return block


def power_figures(
    detectable: float, se: float, fixed: dict, n_users: int, day: int, params: AbtestParams
) -> dict:
    """MDE (absolute and relative to A's mean) and users/days for abtest.target_lift.

    SE falls as 1/sqrt(users), so users needed = users * (MDE / target)^2; days assume new
    users keep arriving at the rate seen so far (approximate).
    """
    mde = detectable * se if np.isfinite(se) else float("nan")
    base = abs(fixed["mean_a"]) if fixed["mean_a"] else float("nan")
    target = params.target_lift * base
    ratio = (mde / target) ** 2 if np.isfinite(mde) and target > 0 else float("nan")
    users = math.ceil(n_users * ratio) if np.isfinite(ratio) else None
    return {
        "mde": mde,
        "mde_relative": mde / base if np.isfinite(base) and base > 0 else None,
        "mde_power": params.power,
        "target_lift": params.target_lift,
        "users_needed_for_target": users,
        "days_needed_for_target": math.ceil(day * users / n_users) if users else None,
    }


def guardrail_block(
    z: np.ndarray, window: dict, design: str, params: AbtestParams, bounds: dict
) -> dict:
    """Non-inferiority of each guardrail (outside the Holm family), valid under daily looks.

    B is non-inferior when the whole 1 - alpha repeated CI of B's harm (B - A for an error,
    A - B for a higher-is-better metric) lies below margin x A's mean; inferior when it lies
    wholly above; otherwise inconclusive.
    """
    m, c = len(params.metrics), bounds["marginal"]
    block = {}
    for metric, margin in params.guardrails.items():
        fixed = _fixed_result(window, design, metric, params.unit)
        est, sign = fixed["estimate"], 1.0 if metric in LOWER_IS_BETTER else -1.0
        half = seq.t_boundary(c, fixed["df"]) * fixed["se"]
        harm = sorted([sign * (est - half), sign * (est + half)])
        limit = margin * abs(fixed["mean_a"]) if fixed["mean_a"] is not None else float("nan")
        if not all(np.isfinite(harm)) or not np.isfinite(limit):
            verdict = "not testable"
        elif harm[1] < limit:
            verdict = "non-inferior"
        elif harm[0] > limit:
            verdict = "inferior"
        else:
            verdict = "inconclusive"
        block[metric] = {
            "z": z[m + list(params.guardrails).index(metric), -1],
            "estimate": est,
            "mean_a": fixed["mean_a"],
            "repeated_ci": [est - half, est + half],
            "repeated_ci_level": 1 - params.alpha,
            "margin_relative": margin,
            "margin": limit,
            "verdict": verdict,
            "rule": f"non-inferior iff B is worse by less than {margin:.0%} of A's mean over "
            f"the whole {1 - params.alpha:.0%} repeated CI",
        }
    return block


def _fixed_result(window: dict, design: str, metric: str, unit: str) -> dict:
    """The fixed-sample result of one metric in one design and unit of a window."""
    result = (
        window["paired"][metric] if design == "paired" else window["randomised"]["metrics"][metric]
    )
    return result if unit == "user" else result["per_event"]


UNIT_TEXT = {"user": "per-user means", "event": "per-event means, user-clustered SEs"}
DESIGN_TEXT = {
    "paired": "paired: both frozen models on the same events",
    "randomised": "simulated user-randomised test",
}


def decision_sentence(
    block: dict, guards: dict, params: AbtestParams, day: int, window: dict, note: str
) -> str:
    """One sentence: what was compared, who wins on which metric, what could be detected."""
    order = [params.primary_metric] + [m for m in params.metrics if m != params.primary_metric]
    level = f"{1 - params.alpha:.0%} repeated CI"
    head = (
        f"Offline replay, day {day} (days 1-{day}, {window['n_users']} users, "
        f"{window['n_events']} events; {DESIGN_TEXT[params.decision_design]}, "
        f"{UNIT_TEXT[params.unit]}; B = {params.model_b} vs A = {params.model_a}{note}): "
    )
    parts = []
    for metric in order:
        s = block[metric]
        lo, hi = s["repeated_ci"]
        numbers = f"{s['estimate']:+.4g}, {level} [{_fmt(lo)}, {_fmt(hi)}]"
        if s["significant"]:
            loser = "A" if s["winner"] == "B" else "B"
            parts.append(
                f"{s['winner']} beats {loser} on {metric} ({numbers}), Holm-adjusted sequential "
                f"boundary crossed on day {s['significant_since_day']}"
            )
        else:
            mde = s["mde_relative"]
            could = f"; this test could only have detected lifts >= {mde:.0%}" if mde else ""
            parts.append(f"{metric}: not significant ({numbers}{could})")
    for metric, g in guards.items():
        lo, hi = g["repeated_ci"]
        parts.append(
            f"guardrail {metric} (B at most {g['margin_relative']:.0%} worse): {g['verdict']} "
            f"({g['estimate']:+.4g}, {level} [{_fmt(lo)}, {_fmt(hi)}])"
        )
    return head + "; ".join(parts) + "."


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def business_projection(block: dict, params: AbtestParams) -> dict | None:
    """Daily value of the hit@10 uplift under the ASSUMED traffic and value per success."""
    if "hit@10" not in block:
        return None
    b = params.business
    scale = b.users_per_day * b.recommendations_per_user * b.value_per_success
    s = block["hit@10"]
    lo, hi = s["repeated_ci"]
    ci = [lo * scale, hi * scale] if lo is not None and np.isfinite(lo) else [None, None]
    level = f"{s['repeated_ci_level']:.0%}"
    interval = f"{level} repeated CI {ci[0]:,.2f} to {ci[1]:,.2f}" if ci[0] is not None else "no CI"
    line = (
        f"PROJECTION, not measured: {s['estimate'] * scale:,.2f} per day ({interval}), IF "
        f"{b.users_per_day:,} users/day x {b.recommendations_per_user:g} lists/user x "
        f"{b.value_per_success:g} per hit@10, AND offline hit@10 on replayed events equals a "
        "live success rate"
    )
    return {
        "label": "PROJECTION from assumptions in params (abtest.business), not a measurement",
        "line": line,
        "assumptions": b.model_dump(),
        "metric": "hit@10",
        "uplift_per_recommendation": s["estimate"],
        "daily_value": s["estimate"] * scale,
        "daily_value_repeated_ci": ci,
        "ci_level": s["repeated_ci_level"],
        "formula": "(hit@10 B - A) x users_per_day x recommendations_per_user x value_per_success",
    }


FRAMING = (
    "Offline replay, not a live A/B test: both frozen models scored the same historical test "
    "events and nobody was shown anything; a 'day' is a slice of the test split. Primary: a "
    "paired comparison of the two models on the same events. Secondary: a simulated "
    "user-randomised test (each user's outcomes under the model its hash arm would have shown)."
)


def analyse_day(
    outcomes: pd.DataFrame,
    day: int,
    params: AbtestParams,
    warm: np.ndarray | None = None,
    seeds: tuple[list, list] = ([], []),
    resample: bool = True,
) -> dict:
    """Every statistic of look `day` from per-event outcomes of days 1..day.

    `warm`: users with training ratings (the history segment); `seeds`: other seeds' per-event
    outcomes of A and B (row-aligned with `outcomes`); `resample=False` skips bootstrap,
    permutations and segments (the A/A replays: the decision does not use them).
    """
    user_ids = np.sort(outcomes["user_id"].unique())
    arm_of = pd.Series(assign_arm_b(user_ids, params.salt, params.share_b), index=user_ids)
    today = outcomes[outcomes["day"] == day]
    windows = {
        "day": analyse_window(today, arm_of, params, (day, 0), resample),
        "cumulative": analyse_window(outcomes, arm_of, params, (day, 1), resample),
    }
    cumulative = windows["cumulative"]
    # SRM: cumulative window only (a day's arms of 3 vs 27 users alarm by chance), exact test
    srm = stats.srm_check(cumulative["n_users_a"], cumulative["n_users_b"], params.share_b)
    validity = {
        "valid": not srm.alarm,
        "reason": None if not srm.alarm else (
            f"sample-ratio mismatch over days 1-{day}: {srm.n_a} users in A, {srm.n_b} in B, "
            f"exact binomial p = {srm.p_value:.2g} < {stats.SRM_ALARM_P}: the randomised "
            "design's results are invalid (the paired design does not use the arms)"),
    }  # fmt: skip
    for window in windows.values():
        window["randomised"].update(srm=srm.as_dict(), **validity)
    z = look_statistics(outcomes, arm_of, params, day)
    info = user_days(outcomes, day).astype(float)
    bounds = design_boundaries(info, day, params)
    cumulative["sequential"] = {
        d: sequential_block(z[d], info, cumulative, d, params, bounds) for d in DESIGNS
    }
    cumulative["guardrails"] = {
        d: guardrail_block(z[d], cumulative, d, params, bounds) for d in DESIGNS
    }
    cumulative["information_user_days"] = info.tolist()
    result = {"windows": windows}
    if resample:
        segments = user_segments(cumulative["users"], params.segments, warm)
        result["segments"] = segment_analysis(cumulative["users"], segments, params)
    if seeds[0] or seeds[1]:
        result["seeds"] = seed_analysis(outcomes, seeds[0], seeds[1], params)
    return result


def jsonable(value):
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_result(analysis: dict, day: int, params: AbtestParams, md5s: dict) -> dict:
    """The day's JSON document (without the per-user frames)."""
    windows = {
        name: {k: v for k, v in w.items() if k not in ("users", "arm_b")}
        for name, w in analysis["windows"].items()
    }
    cumulative = analysis["windows"]["cumulative"]
    design = params.decision_design
    block, guards = cumulative["sequential"][design], cumulative["guardrails"][design]
    n_a, n_b = len(params.seed_predictions_a) + 1, len(params.seed_predictions_b) + 1
    checkpoints = (
        "one checkpoint each: this compares two trained checkpoints (one seed per model), "
        "not two models"
        if n_a == n_b == 1
        else f"{n_a} seeds of A, {n_b} of B: see `seeds` for the models' comparison"
    )
    invalid = design == "randomised" and not cumulative["randomised"]["valid"]
    note = "; one checkpoint each" if n_a == n_b == 1 else ""
    sentence = decision_sentence(block, guards, params, day, cumulative, note)
    if invalid:
        sentence = (f"Offline replay, day {day}: no decision: "
                    f"{cumulative['randomised']['reason']}.")  # fmt: skip
    decision = {
        "design": design,
        "unit": params.unit,
        "rule": "success metric significant iff its Holm-adjusted (across the success metrics) "
        "repeated p-value <= alpha; guardrails: non-inferiority on their repeated CI",
        "sentence": sentence,
        "valid": not invalid,
        "b_better": [] if invalid else [m for m in params.metrics if block[m]["winner"] == "B"],
        "a_better": [] if invalid else [m for m in params.metrics if block[m]["winner"] == "A"],
        "no_significant_difference": [m for m in params.metrics if not block[m]["significant"]],
        "guardrails": {m: g["verdict"] for m, g in guards.items()},
    }
    doc = {
        "day": day,
        "framing": FRAMING,
        "model_a": params.model_a,
        "model_b": params.model_b,
        "checkpoints": checkpoints,
        "alpha": params.alpha,
        "decision": decision,
        "business_impact": business_projection(block, params),
        "windows": windows,
        "segments": analysis.get("segments", {}),
        "seeds": analysis.get("seeds"),
        "methods": METHODS,
        "inputs": md5s,
    }
    return jsonable(doc)


METHODS = {
    "what": FRAMING,
    "units": "per user: each user's events averaged first, every user weighs the same (Kohavi "
    "et al. ch. 17-18); per event: ratio of sums, user-clustered delta-method SE (Deng, "
    "Knoblich & Lu 2018), every event weighs the same so heavy raters dominate. abtest.unit "
    "is the decision's unit",
    "paired": "paired t-test; BCa bootstrap CI (as scipy.stats.bootstrap, paired; only with >= "
    "abtest.bootstrap_min_users users); sign-flip permutation p = (b+1)/(m+1); effect size d_z; "
    "Wilcoxon signed-rank as a secondary only; zero variance: exact sign-flip p",
    "randomised": "SIMULATED: salted-hash user assignment, each user's outcome under its arm's "
    "model; Welch t-test; relative lift with delta-method SE (GrowthBook gbstats); two-sample "
    "BCa bootstrap; SRM: exact binomial test of the cumulative arm counts, alarm at p < 0.001 "
    "marks this design invalid (never stops the paired analysis)",
    "multiple_metrics": "Holm (p_value_holm) and Benjamini-Hochberg (p_value_bh) across the "
    "success metrics; guardrails are outside the family",
    "sequential": "group-sequential, Lan-DeMets alpha spending at calendar fraction day/n_days, "
    "information = cumulative user-days; repeated p-values, Holm across the success metrics",
    "intervals": "repeated_ci: per metric at 1 - alpha, valid under the daily looks, not "
    "adjusted for multiplicity; simultaneous_ci: at 1 - alpha/m (Bonferroni), all metrics "
    "together; fixed-sample ci_low/ci_high: 1 - alpha, one look",
    "power": "mde: effect detected with probability abtest.power by these looks at Holm's "
    "strictest level alpha/m (numerical integration of the boundaries); users/days needed "
    "for abtest.target_lift scale the SE as 1/sqrt(users)",
    "guardrails": "non-inferiority: B's harm must stay below margin x A's mean over the whole "
    "repeated CI (Spotify's success/guardrail split)",
    "segments": "EXPLORATORY (no multiplicity correction, not sequential): paired design per "
    "group, both units; interaction = Welch t of the groups' per-user differences / z of the "
    "difference of the groups' per-event estimates",
    "cuped": "not used: see README (no pre-period of the models' outcomes exists; the paired "
    "design already removes between-user variance)",
}


def users_frame(analysis: dict, params: AbtestParams) -> pd.DataFrame:
    """One row per user of day N: outcomes under A and B and the assigned arm."""
    window = analysis["windows"]["day"]
    users = window["users"].copy()
    users.insert(2, "arm", np.where(window["arm_b"], "B", "A"))
    return users.reset_index(drop=True)


def read_seed_outcomes(
    batches_dir: Path, day: int, params: AbtestParams
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Other seeds' per-event outcomes of A and B for days 1..day (abtest.seed_predictions_*)."""
    if not (params.seed_predictions_a or params.seed_predictions_b):
        return [], []
    events = pd.concat([read_batch(batches_dir, d) for d in range(1, day + 1)], ignore_index=True)
    metrics = all_metrics(params)
    return (
        [seed_outcomes(events, Path(p), metrics) for p in params.seed_predictions_a],
        [seed_outcomes(events, Path(p), metrics) for p in params.seed_predictions_b],
    )


def run_abtest(
    *,
    day: int,
    batches_dir: Path,
    predictions_a: Path,
    predictions_b: Path,
    out_metrics: Path,
    out_users: Path,
    params: AbtestParams,
    split_dir: Path | None = None,
) -> dict:
    """Analyse look `day`, write its JSON and per-user parquet; return the JSON document."""
    if not 1 <= day <= params.n_days:
        raise RecsysError(f"--day {day}: must be within 1..{params.n_days} (abtest.n_days)")
    predictions = (Path(predictions_a), Path(predictions_b))
    md5s = input_md5s(batches_dir, day, predictions) if _all_exist(batches_dir, day) else {}
    outcomes = load_outcomes(batches_dir, day, predictions, all_metrics(params))
    check_chain(Path(out_metrics).parent / f"day_{day - 1:02d}.json", md5s, day)
    warm = train_users(split_dir) if split_dir is not None else None
    seeds = read_seed_outcomes(batches_dir, day, params)
    analysis = analyse_day(outcomes, day, params, warm=warm, seeds=seeds)
    doc = build_result(analysis, day, params, md5s)
    write_parquet(out_users, users_frame(analysis, params))
    write_json(out_metrics, doc)
    return doc


def _all_exist(batches_dir: Path, day: int) -> bool:
    return all(batch_path(batches_dir, d).is_file() for d in range(1, day + 1))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, analyse one day, print the decision sentence."""
    from recsys.config import load_params
    from recsys.errors import run_reporting_errors

    parser = argparse.ArgumentParser(
        prog="python -m recsys.abtest.stage",
        description=__doc__.split("\n")[0],
        epilog="Day N>1 needs day N-1's JSON beside --out-metrics (the chained DVC stage).",
    )
    parser.add_argument("--day", type=int, required=True, help="the look: day N (1-based)")
    parser.add_argument("--batches", type=Path, required=True, help="folder of day_NN.parquet")
    parser.add_argument("--predictions-a", type=Path, required=True, help="model A's predictions")
    parser.add_argument("--predictions-b", type=Path, required=True, help="model B's predictions")
    parser.add_argument("--out-metrics", type=Path, required=True, help="day_NN.json to write")
    parser.add_argument("--out-users", type=Path, required=True, help="day_NN.parquet to write")
    parser.add_argument(
        "--split", type=Path, default=None,
        help="split folder (train.parquet: warm users for the history segment)",
    )  # fmt: skip
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        doc = run_abtest(
            split_dir=args.split,
            day=args.day,
            batches_dir=args.batches,
            predictions_a=args.predictions_a,
            predictions_b=args.predictions_b,
            out_metrics=args.out_metrics,
            out_users=args.out_users,
            params=load_params(args.params).abtest,
        )
        print(doc["decision"]["sentence"])
        return 0

    return run_reporting_errors("abtest", body)


if __name__ == "__main__":
    sys.exit(main())
