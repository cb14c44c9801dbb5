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
from recsys.abtest.analysis import DESIGNS, analyse_window, better_arm, look_statistics
from recsys.abtest.outcomes import (
    assign_arm_b,
    batch_path,
    event_outcomes,
    pre_period,
    read_batch,
    read_predictions,
    serve,
    user_days,
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


def sequential_block(
    z: np.ndarray, info: np.ndarray, window: dict, design: str, params: AbtestParams
) -> dict:
    """Repeated p-values, Holm across metrics, boundaries and repeated CIs at the last look.

    Each metric's repeated CI uses the level Holm tested it at (α/(m - i + 1)), so an
    interval excludes 0 exactly when the metric's current look crosses its Holm boundary.
    """
    day, metrics = z.shape[1], params.metrics
    spend = np.arange(1, day + 1) / params.n_days
    holm_grid = tuple(params.alpha / m for m in range(1, len(metrics) + 1))
    running = seq.repeated_p_values(z, info, spend, params.spending, params.rho, holm_grid)
    adjusted_by_look = np.apply_along_axis(stats.holm, 0, running)  # (metrics, looks)
    levels = stats.holm_levels(running[:, -1], params.alpha)
    c_at = seq.boundary_table(info, spend, levels, params.spending, params.rho)[:, -1]
    block = {}
    for i, metric in enumerate(metrics):
        fixed = _fixed_result(window, design, metric)
        est, half = fixed["estimate"], seq.t_boundary(c_at[i], fixed["df"]) * fixed["se"]
        significant = bool(adjusted_by_look[i, -1] <= params.alpha)
        at_min = int(np.nanargmin(np.where(np.isnan(running[i]), np.inf, running[i])))
        since = np.flatnonzero(adjusted_by_look[i] <= params.alpha)
        block[metric] = {
            "z": z[i, -1],
            "boundary_z": c_at[i],
            "repeated_p": running[i, -1],
            "repeated_p_holm": adjusted_by_look[i, -1],
            "significant": significant,
            "significant_since_day": int(since[0]) + 1 if since.size else None,
            "winner": better_arm(metric, z[i, at_min]) if significant else None,
            "estimate": est,
            "repeated_ci": [est - half, est + half],
            "repeated_ci_level": levels[i],
        }
    return block


def _fixed_result(window: dict, design: str, metric: str) -> dict:
    """The fixed-sample result of one metric in one design of a window."""
    if design == "paired":
        return window["paired"][metric]
    return window["randomised"]["metrics"][metric]


def decision_sentence(block: dict, params: AbtestParams, day: int, window: dict) -> str:
    """One sentence: who wins on which metric, by how much, with what confidence."""
    order = [params.primary_metric] + [m for m in params.metrics if m != params.primary_metric]
    level = f"{100 * (1 - params.alpha):g} % repeated CI, Holm"
    parts = []
    for metric in order:
        s = block[metric]
        lo, hi = s["repeated_ci"]
        numbers = f"{s['estimate']:+.4g}, {level} [{_fmt(lo)}, {_fmt(hi)}]"
        if s["significant"]:
            loser = "A" if s["winner"] == "B" else "B"
            parts.append(
                f"{s['winner']} beats {loser} on {metric} ({numbers}), sequential boundary "
                f"crossed on day {s['significant_since_day']}"
            )
        else:
            parts.append(f"{metric}: no significant difference ({numbers})")
    head = (
        f"Day {day} (days 1-{day}, {window['n_users']} users, {window['n_events']} events, "
        f"{params.decision_design} design, B = {params.model_b}, A = {params.model_a}): "
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
    return {
        "label": "PROJECTION from assumptions in params (abtest.business), not a measurement",
        "assumptions": b.model_dump(),
        "metric": "hit@10",
        "uplift_per_recommendation": s["estimate"],
        "daily_value": s["estimate"] * scale,
        "daily_value_repeated_ci": [lo * scale, hi * scale] if lo is not None else [None, None],
        "formula": "(hit@10 B - A) x users_per_day x recommendations_per_user x value_per_success",
    }


def analyse_day(outcomes: pd.DataFrame, day: int, params: AbtestParams) -> dict:
    """Every statistic of look `day` from per-event outcomes of days 1..day."""
    user_ids = np.sort(outcomes["user_id"].unique())
    arm_of = pd.Series(assign_arm_b(user_ids, params.salt, params.share_b), index=user_ids)
    today = outcomes[outcomes["day"] == day]
    pre = pre_period(
        outcomes[outcomes["day"] < day], params.metrics, np.sort(today["user_id"].unique())
    )
    windows = {
        "day": analyse_window(today, arm_of, params, (day, 0), pre=pre),
        "cumulative": analyse_window(outcomes, arm_of, params, (day, 1)),
    }
    z = look_statistics(outcomes, arm_of, params, day)
    info = user_days(outcomes, day).astype(float)
    cumulative = windows["cumulative"]
    cumulative["sequential"] = {
        design: sequential_block(z[design], info, cumulative, design, params) for design in DESIGNS
    }
    cumulative["information_user_days"] = info.tolist()
    return {"windows": windows, "pre": pre}


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
    block = cumulative["sequential"][params.decision_design]
    decision = {
        "design": params.decision_design,
        "rule": "significant iff Holm-adjusted (across metrics) repeated p-value <= alpha",
        "sentence": decision_sentence(block, params, day, cumulative),
        "b_better": [m for m in params.metrics if block[m]["winner"] == "B"],
        "a_better": [m for m in params.metrics if block[m]["winner"] == "A"],
        "no_significant_difference": [m for m in params.metrics if not block[m]["significant"]],
    }
    doc = {
        "day": day,
        "model_a": params.model_a,
        "model_b": params.model_b,
        "alpha": params.alpha,
        "decision": decision,
        "business_impact": business_projection(block, params),
        "windows": windows,
        "methods": METHODS,
        "inputs": md5s,
    }
    return jsonable(doc)


METHODS = {
    "unit": "user: events averaged per user first (Kohavi et al. ch. 17-18)",
    "paired": "paired t-test; BCa bootstrap CI (as scipy.stats.bootstrap, paired); sign-flip "
    "permutation p = (b+1)/(m+1); effect size d_z; Wilcoxon signed-rank as a secondary only",
    "randomised": "salted-hash user assignment; Welch t-test; relative lift with delta-method "
    "SE (GrowthBook gbstats); two-sample BCa bootstrap; SRM Pearson chi-square alarm p<0.001",
    "cuped": "day window, randomised design: covariate = user's mean over both models on "
    "earlier days; theta pooled within arms; users without earlier days are not adjusted",
    "multiple_metrics": "Holm (p_value_holm) and Benjamini-Hochberg (p_value_bh) across metrics",
    "sequential": "group-sequential, Lan-DeMets alpha spending at calendar fraction day/n_days, "
    "information = cumulative user-days; repeated p-values, Holm across metrics; repeated CIs",
}


def users_frame(analysis: dict, params: AbtestParams) -> pd.DataFrame:
    """One row per user of day N: outcomes under A and B, assigned arm, pre-period covariate."""
    window = analysis["windows"]["day"]
    users = window["users"].copy()
    users.insert(2, "arm", np.where(window["arm_b"], "B", "A"))
    pre = analysis["pre"].drop(columns="user_id").reset_index(drop=True)
    return pd.concat([users.reset_index(drop=True), pre], axis=1)


def run_abtest(
    *,
    day: int,
    batches_dir: Path,
    predictions_a: Path,
    predictions_b: Path,
    out_metrics: Path,
    out_users: Path,
    params: AbtestParams,
) -> dict:
    """Analyse look `day`, write its JSON and per-user parquet; return the JSON document."""
    if not 1 <= day <= params.n_days:
        raise RecsysError(f"--day {day}: must be within 1..{params.n_days} (abtest.n_days)")
    predictions = (Path(predictions_a), Path(predictions_b))
    md5s = input_md5s(batches_dir, day, predictions) if _all_exist(batches_dir, day) else {}
    outcomes = load_outcomes(batches_dir, day, predictions, params.metrics)
    check_chain(Path(out_metrics).parent / f"day_{day - 1:02d}.json", md5s, day)
    analysis = analyse_day(outcomes, day, params)
    for name in ("day", "cumulative"):
        srm = analysis["windows"][name]["randomised"]["srm"]
        if srm["alarm"]:
            raise RecsysError(
                f"sample-ratio mismatch on day {day} ({name}): {srm['n_a']} users in A, "
                f"{srm['n_b']} in B, chi2 p = {srm['p_value']:.2g} < 0.001; the assignment is "
                "broken, so no result is written"
            )
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
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        doc = run_abtest(
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
