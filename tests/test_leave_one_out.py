"""The leave-one-out protocol: the split by hand, and a run on a tiny dataset."""

from __future__ import annotations

import pandas as pd

from recsys.config import Params, TrainParams
from recsys.training.leave_one_out import loo_split, run_loo
from tests.conftest import tiny_ratings


def test_loo_takes_last_as_test_and_second_to_last_as_val_ties_by_item():
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [5, 3, 4, 9, 7, 8],
            "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 5.0],
            "timestamp": [10, 30, 30, 20, 1, 2],
        }
    )
    data = loo_split(ratings)
    # user 1 in (time, item) order: 5@10, 9@20, 3@30, 4@30 -> test 4, val 3
    assert data.test[["user_id", "item_id"]].values.tolist() == [[1, 4]]
    assert data.val[["user_id", "item_id"]].values.tolist() == [[1, 3]]
    # user 2 has only 2 events: all train
    assert sorted(data.train["item_id"]) == [5, 7, 8, 9]


def test_loo_benchmark_reports_ranking_metrics_per_model():
    params = Params(train=TrainParams(device="cpu"))
    result = run_loo(tiny_ratings(), ["mean", "bias"], params)
    assert set(result) == {"mean", "bias"}
    for row in result.values():
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
        assert row["n_users"] == 30  # every tiny user has 12 events
