"""Is experiment B's model significantly better than experiment A's, per user?

Each experiment's evaluate@<model> stage wrote per-event test predictions to
`artifacts/predictions/<model>.parquet`; they are read from the experiment's commit with
`dvc.api.open` (DVC's cache has them after a local `dvc exp run`), or from disk for
`workspace`. Both must have predicted the same events (the same split). The statistics are
the A/B stage's paired design (recsys.abtest): per-event outcomes, one mean per user (the
unit of analysis, Kohavi et al. ch. 17-18), then per metric a paired t-test with its CI,
BCa bootstrap, sign-flip permutation p (Smyth & Phipson 2010) and d_z; Holm across the
metrics. Significant = Holm-adjusted paired t p <= abtest.alpha. This is one fixed-sample
look, not the daily sequential analysis.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.abtest import stats
from recsys.abtest.analysis import paired_metric
from recsys.abtest.outcomes import KEY, event_outcomes, per_user, read_predictions
from recsys.abtest.stage import jsonable
from recsys.config import AB_METRICS, PARAMS_FILE, AbtestParams, load_params
from recsys.errors import RecsysError

WORKSPACE = "workspace"


def predictions_path(model: str) -> str:
    """Where evaluate@<model> writes its per-event test predictions (dvc.yaml's outs)."""
    return f"artifacts/predictions/{model}.parquet"


def resolve_rev(name: str, repo: str | Path = ".") -> str | None:
    """The commit of an experiment name (as `dvc exp show` lists it) or git rev; None: workspace."""
    if name == WORKSPACE:
        return None
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import resolve_name
    from scmrepo.exceptions import SCMError

    try:
        with Repo(str(repo)) as dvc_repo:
            ref = resolve_name(dvc_repo.scm, name)[name]  # refs/exps/... of that name, or None
            return dvc_repo.scm.get_ref(str(ref)) if ref else dvc_repo.scm.resolve_rev(name)
    except SCMError:
        raise RecsysError(
            f"{name!r} is neither an experiment nor a git revision (`dvc exp show` lists "
            "experiments; a failed or still queued one has no results)"
        ) from None
    except DvcException as err:
        raise RecsysError(f"{name}: {str(err).splitlines()[0]}") from None


def read_predictions_at(
    model: str, rev: str | None, label: str, repo: str | Path = "."
) -> pd.DataFrame:
    """A model's predictions at a commit (or on disk when rev is None), checked as the A/B
    stage checks them."""
    path = predictions_path(model)
    if rev is None:
        return read_predictions(Path(repo) / path)
    import dvc.api
    from dvc.exceptions import DvcException

    with tempfile.TemporaryDirectory(prefix="recsys-compare-") as tmp:
        local = Path(tmp) / Path(path).name
        try:
            with dvc.api.open(path, repo=str(repo), rev=rev, mode="rb") as src:
                local.write_bytes(src.read())
        except DvcException as err:
            reason = str(err).splitlines()[0]
            message = f"{label}: cannot read {path} (did evaluate@{model} run?): {reason}"
            raise RecsysError(message) from None
        try:
            return read_predictions(local)
        except RecsysError as err:
            raise RecsysError(str(err).replace(str(local), f"{label}:{path}")) from None


def pair_events(
    preds_a: pd.DataFrame, preds_b: pd.DataFrame, labels: tuple[str, str]
) -> pd.DataFrame:
    """Events with both predictions (pred_a, rank_a, pred_b, rank_b); the keys must match."""
    both = preds_a.merge(preds_b, on=KEY, how="outer", suffixes=("_a", "_b"), indicator=True)
    only = both["_merge"].value_counts()
    if only["left_only"] or only["right_only"]:
        raise RecsysError(
            f"the splits differ: {labels[0]} and {labels[1]} predicted different test events "
            f"({only['both']} shared, {only['left_only']} only in {labels[0]}, "
            f"{only['right_only']} only in {labels[1]}); compare experiments on the same split"
        )
    if (both["rating_a"] != both["rating_b"]).any():
        raise RecsysError(
            f"the splits differ: {labels[0]} and {labels[1]} give the same events different "
            "ratings (a different dataset?)"
        )
    names = {"rating_a": "rating", "pred_rating_a": "pred_a", "pred_rating_b": "pred_b"}
    return both.rename(columns=names).assign(day=0).drop(columns=["rating_b", "_merge"])


def compare_predictions(
    preds_a: pd.DataFrame,
    preds_b: pd.DataFrame,
    params: AbtestParams,
    labels: tuple[str, str] = ("A", "B"),
) -> dict:
    """Per metric: paired tests of B - A on per-user means, Holm across metrics, a verdict."""
    metrics = list(AB_METRICS)
    users = per_user(event_outcomes(pair_events(preds_a, preds_b, labels), metrics), metrics)
    n_events = int(users["n_events"].sum())
    results = {
        metric: {
            **paired_metric(users, metric, params, seed=params.seed + i),
            "n_users": len(users),
            "n_events": n_events,
        }
        for i, metric in enumerate(metrics)
    }
    raw = np.array([results[m]["p_value"] for m in metrics], dtype=float)
    for metric, adjusted in zip(metrics, stats.holm(raw), strict=True):
        results[metric]["p_value_holm"] = float(adjusted)
    return {
        "n_users": len(users),
        "n_events": n_events,
        "alpha": params.alpha,
        "test": "paired t-test on per-user means, Holm-adjusted across the metrics",
        "metrics": results,
        "verdict": verdict(results, labels, params.alpha),
    }


def _names(metrics: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return metrics[0] if len(metrics) == 1 else f"{', '.join(metrics[:-1])} and {metrics[-1]}"


def verdict(results: dict[str, dict], labels: tuple[str, str], alpha: float) -> str:
    """One sentence: which experiment is significantly better on which metrics."""
    significant = {m: r for m, r in results.items() if r["p_value_holm"] <= alpha}
    b_wins = [m for m, r in significant.items() if r["better"] == "B"]
    a_wins = [m for m, r in significant.items() if r["better"] == "A"]
    rest = [m for m in results if m not in b_wins + a_wins]
    test = f"Holm-adjusted paired t, alpha {alpha:g}"
    if not b_wins and not a_wins:
        return f"No significant difference between {labels[0]} and {labels[1]} ({test})."
    first, second = (labels[1], labels[0]) if b_wins else (labels[0], labels[1])
    wins, losses = (b_wins, a_wins) if b_wins else (a_wins, [])
    parts = [f"{first} is significantly better than {second} on {_names(wins)}"]
    if losses:
        parts.append(f"worse on {_names(losses)}")
    if rest:
        parts.append(f"no significant difference on {_names(rest)}")
    return "; ".join(parts) + f" ({test})."


def compare(
    exp_a: str,
    exp_b: str,
    model: str = "ss4rec",
    model_b: str | None = None,
    repo: str | Path = ".",
) -> dict:
    """Compare `model` in experiment A with `model_b` (default the same) in experiment B."""
    model_b = model_b or model
    params = load_params(Path(repo) / PARAMS_FILE).abtest
    revs = [resolve_rev(exp_a, repo), resolve_rev(exp_b, repo)]
    sides = [
        {"experiment": exp, "rev": rev or WORKSPACE, "model": name}
        for exp, rev, name in zip((exp_a, exp_b), revs, (model, model_b), strict=True)
    ]
    labels = (_side_label(sides[0], sides[1]), _side_label(sides[1], sides[0]))
    frames = [
        read_predictions_at(side["model"], rev, label, repo)
        for side, rev, label in zip(sides, revs, labels, strict=True)
    ]
    return {"a": sides[0], "b": sides[1], **compare_predictions(*frames, params, labels)}


def _side_label(side: dict, other: dict) -> str:
    """How the verdict names a side: its experiment, plus its model when that tells them apart."""
    if side["experiment"] == other["experiment"] or side["model"] != other["model"]:
        return f"{side['experiment']} ({side['model']})"
    return side["experiment"]


def render_comparison(result: dict) -> str:
    """The comparison as an aligned text table with the verdict last."""
    a, b = result["a"], result["b"]
    head = [
        f"A = {_side_head(a)}; B = {_side_head(b)}; "
        f"{result['n_users']} users, {result['n_events']} events",
        "",
    ]
    columns = ["metric", "mean A", "mean B", "B - A", f"{1 - result['alpha']:.0%} CI"]
    columns += ["p (t)", "p Holm", "p perm", "d_z", "favours"]
    rows = [columns] + [_row(m, r, result["alpha"]) for m, r in result["metrics"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(head + [line.rstrip() for line in lines] + ["", result["verdict"]])


def _side_head(side: dict) -> str:
    """`name (abc1234) model`, or `workspace model` for the files on disk."""
    if side["rev"] == WORKSPACE:
        return f"{WORKSPACE} {side['model']}"
    return f"{side['experiment']} ({side['rev'][:7]}) {side['model']}"


def _num(value: float | None, digits: int = 4) -> str:
    """A number for the table; None/NaN as -."""
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _row(metric: str, r: dict, alpha: float) -> list[str]:
    """One metric's cells."""
    ci = f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
    significant = r["p_value_holm"] is not None and r["p_value_holm"] <= alpha
    better = f"{r['better']}{' (significant)' if significant else ''}" if r["better"] else "-"
    cells = [_num(r[k]) for k in ("mean_a", "mean_b", "estimate")] + [ci]
    cells += [_num(r[k]) for k in ("p_value", "p_value_holm", "p_permutation")]
    return [metric, *cells, _num(r["effect_size_dz"], 2), better]


def compare_command(exp_a: str, exp_b: str, model: str, model_b: str | None, as_json: bool) -> int:
    """`recsys compare`: print the comparison table, or the result as JSON."""
    result = jsonable(compare(exp_a, exp_b, model, model_b))
    print(json.dumps(result, indent=2) if as_json else render_comparison(result))
    return 0
