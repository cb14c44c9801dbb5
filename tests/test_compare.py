"""`recsys compare`: the paired per-user statistics between two prediction files.

Expected values are worked out here independently: per-user means by plain Python, the
paired t-test by scipy.stats.ttest_rel, Holm by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from recsys.abtest.compare import compare_predictions, render_comparison, verdict
from recsys.abtest.stage import jsonable
from recsys.config import AB_METRICS, AbtestParams
from recsys.errors import RecsysError

# (user_id, item_id, timestamp, rating, pred A, rank A, pred B, rank B): 6 users, 1-3 events
EVENTS = [
    (1, 10, 100, 4.0, 3.0, 12, 3.8, 2),
    (1, 11, 100, 2.0, 3.5, 1, 2.5, 3),
    (2, 12, 200, 5.0, 4.0, 30, 4.5, 8),
    (3, 13, 300, 3.0, 3.1, 5, 3.0, 1),
    (3, 14, 310, 1.0, 2.5, 40, 1.5, 11),
    (3, 15, 320, 4.0, 3.0, 9, 3.9, 4),
    (4, 16, 400, 3.0, 3.3, 2, 3.6, 6),
    (5, 17, 500, 5.0, 3.0, 15, 4.0, 7),
    (5, 18, 510, 2.0, 2.2, 3, 2.0, 2),
    (6, 19, 600, 4.0, 4.4, 10, 3.2, 20),
]
PARAMS = AbtestParams(n_bootstrap=200, n_permutations=500)


def frames(events=EVENTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two models' prediction files as frames."""
    rows = pd.DataFrame(
        events, columns=["user_id", "item_id", "timestamp", "rating", "pa", "ra", "pb", "rb"]
    )
    keys = rows[["user_id", "item_id", "timestamp", "rating"]]
    a = keys.assign(pred_rating=rows["pa"], rank=rows["ra"])
    b = keys.assign(pred_rating=rows["pb"], rank=rows["rb"])
    return a, b


def outcome(metric: str, pred: float, rating: float, rank: int) -> float:
    """One event's outcome, as defined in recsys/abtest/outcomes.py's docstring."""
    return {
        "sq_err": (pred - rating) ** 2,
        "abs_err": abs(pred - rating),
        "hit@10": float(rank <= 10),
        "ndcg@10": 1 / math.log2(rank + 1) if rank <= 10 else 0.0,
        "rr@10": 1 / rank if rank <= 10 else 0.0,
    }[metric]


def user_means(metric: str, events=EVENTS) -> tuple[list[float], list[float]]:
    """Per-user means under A and under B, users in id order."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for user, _, _, rating, pa, ra, pb, rb in events:
        sums[user][0] += outcome(metric, pa, rating, ra)
        sums[user][1] += outcome(metric, pb, rating, rb)
        sums[user][2] += 1
    users = sorted(sums)
    return [sums[u][0] / sums[u][2] for u in users], [sums[u][1] / sums[u][2] for u in users]


def holm(p: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, written out."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - step) * p[i]))
        adjusted[i] = running
    return adjusted


def test_statistics_match_scipy_on_per_user_means():
    result = compare_predictions(*frames(), PARAMS, labels=("exp-a", "exp-b"))
    assert (result["n_users"], result["n_events"]) == (6, len(EVENTS))
    raw = []
    for metric in AB_METRICS:
        a, b = user_means(metric)
        expected = sps.ttest_rel(b, a)
        ci = expected.confidence_interval(0.95)
        diff = np.subtract(b, a)
        got = result["metrics"][metric]
        assert got["mean_a"] == pytest.approx(np.mean(a), rel=1e-12)
        assert got["mean_b"] == pytest.approx(np.mean(b), rel=1e-12)
        assert got["estimate"] == pytest.approx(np.mean(b) - np.mean(a), rel=1e-12)
        assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)
        assert got["statistic"] == pytest.approx(expected.statistic, rel=1e-10)
        assert [got["ci_low"], got["ci_high"]] == pytest.approx([ci.low, ci.high], rel=1e-10)
        assert got["effect_size_dz"] == pytest.approx(diff.mean() / diff.std(ddof=1), rel=1e-10)
        assert got["n_users"] == 6
        assert 0 < got["p_permutation"] <= 1
        raw.append(expected.pvalue)
    adjusted = [result["metrics"][m]["p_value_holm"] for m in AB_METRICS]
    assert adjusted == pytest.approx(holm(raw), rel=1e-10)


def test_swapping_the_experiments_flips_the_sign_not_the_p_value():
    a, b = frames()
    forward = compare_predictions(a, b, PARAMS)["metrics"]["ndcg@10"]
    backward = compare_predictions(b, a, PARAMS)["metrics"]["ndcg@10"]
    assert backward["estimate"] == pytest.approx(-forward["estimate"])
    assert backward["p_value"] == pytest.approx(forward["p_value"])
    assert {forward["better"], backward["better"]} == {"A", "B"}


def test_row_order_does_not_matter():
    a, b = frames()
    shuffled = b.sample(frac=1.0, random_state=0)
    # jsonable: NaN (no bootstrap below abtest.bootstrap_min_users) -> None, comparable
    assert jsonable(compare_predictions(a, shuffled, PARAMS)) == jsonable(
        compare_predictions(a, b, PARAMS)
    )


def test_different_events_mean_the_splits_differ():
    a, b = frames()
    with pytest.raises(RecsysError, match=r"^the splits differ: x and y predicted different"):
        compare_predictions(a, b.iloc[1:], PARAMS, labels=("x", "y"))
    moved = b.assign(timestamp=b["timestamp"] + 1)
    with pytest.raises(RecsysError, match=r"0 shared, 10 only in x, 10 only in y"):
        compare_predictions(a, moved, PARAMS, labels=("x", "y"))
    with pytest.raises(RecsysError, match=r"the same events different ratings"):
        compare_predictions(a, b.assign(rating=5.0), PARAMS)


def test_verdict_names_the_winner_and_the_metrics():
    def result(p_holm: float, better: str | None) -> dict:
        return {"p_value_holm": p_holm, "better": better}

    results = {
        "sq_err": result(0.01, "A"),
        "ndcg@10": result(0.001, "B"),
        "rr@10": result(0.3, "B"),
    }
    assert verdict(results, ("old", "new"), 0.05) == (
        "new is significantly better than old on ndcg@10; worse on sq_err; "
        "no significant difference on rr@10 (Holm-adjusted paired t, alpha 0.05)."
    )
    results = {"sq_err": result(0.01, "A"), "hit@10": result(float("nan"), None)}
    assert verdict(results, ("old", "new"), 0.05).startswith(
        "old is significantly better than new on sq_err; no significant difference on hit@10"
    )
    results = {"sq_err": result(0.2, "A")}
    assert verdict(results, ("old", "new"), 0.05) == (
        "No significant difference between old and new (Holm-adjusted paired t, alpha 0.05)."
    )


def test_table_names_each_side_with_its_short_rev_or_workspace():
    result = compare_predictions(*frames(), PARAMS, labels=("workspace (ncf)", "exp-1"))
    result["a"] = {"experiment": "workspace", "rev": "workspace", "model": "ncf"}
    result["b"] = {"experiment": "exp-1", "rev": "0123456789abcdef", "model": "ss4rec"}
    lines = render_comparison(result).splitlines()
    assert lines[0] == "A = workspace ncf; B = exp-1 (0123456) ss4rec; 6 users, 10 events"
    assert lines[2].split() == ["metric", "mean", "A", "mean", "B", "B", "-", "A", "95%", "CI",
                                "p", "(t)", "p", "Holm", "p", "perm", "d_z", "favours"]  # fmt: skip
    assert lines[-1] == result["verdict"]
