"""The leave-one-out protocol: the split by hand, and a run on a tiny dataset."""

from __future__ import annotations

import pandas as pd
import torch

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


def test_k_core_repeats_until_every_user_and_item_has_k_ratings():
    from recsys.training.leave_one_out import k_core

    # user 3 has 1 rating; dropping it leaves item 30 with 1 rating, which then goes too
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 1],
            "item_id": [10, 20, 10, 20, 30, 30],
            "rating": 4.0,
            "timestamp": range(6),
        }
    )
    kept = k_core(ratings, 2)
    assert sorted(zip(kept["user_id"], kept["item_id"], strict=True)) == [
        (1, 10), (1, 20), (2, 10), (2, 20)
    ]  # fmt: skip
    assert len(k_core(ratings, 0)) == 6


def test_order_protocol_trains_with_same_second_siblings_as_history():
    from recsys.training.tensors import EventLog, sequence_train_set, split_from_frames

    train = pd.DataFrame(
        {"user_id": [1, 1, 1], "item_id": [5, 6, 7], "rating": 3.0, "timestamp": [1, 2, 2]}
    )
    data = split_from_frames(train, train.iloc[:0], train.iloc[:0])
    by_time = sequence_train_set(EventLog(data, "time"), max_len=3).batch(torch.arange(1))
    by_order = sequence_train_set(EventLog(data, "order"), max_len=3).batch(torch.arange(1))
    assert by_time["target_col"].tolist() == [-1, 0, 0]  # 7 shares 6's second: not history
    assert by_order["target_col"].tolist() == [-1, 0, 1]  # RecBole: 6 precedes 7
