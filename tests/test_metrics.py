"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.training.metrics import (
    hit_rate_at,
    mae,
    mrr_at,
    ndcg_at,
    rank_of_targets,
    rmse,
    summarize,
)

RANKS = np.array([1, 3, 11, 2])  # one target each; k = 10


def test_rating_errors_by_hand():
    pred, true = np.array([3.0, 4.0, 5.0]), np.array([4.0, 4.0, 3.0])
    # errors -1, 0, 2: squared mean 5/3, absolute mean 3/3
    assert rmse(pred, true) == pytest.approx(math.sqrt(5 / 3))
    assert mae(pred, true) == pytest.approx(1.0)


def test_ranking_metrics_by_hand():
    assert hit_rate_at(RANKS, 10) == pytest.approx(3 / 4)
    # 1/log2(2) + 1/log2(4) + 0 (rank 11 > 10) + 1/log2(3) = 1 + 0.5 + 0.63093
    assert ndcg_at(RANKS, 10) == pytest.approx((1 + 0.5 + 1 / math.log2(3)) / 4)
    assert mrr_at(RANKS, 10) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert hit_rate_at(RANKS, 1) == pytest.approx(1 / 4)
    assert mrr_at(RANKS, 2) == pytest.approx((1 + 0.5) / 4)


def test_rank_counts_ties_against_the_model_and_unknown_items_rank_last():
    scores = torch.tensor([[-torch.inf, 0.1, 0.5, 0.5, 0.9]]).expand(4, -1)  # 4 items
    target = torch.tensor([2, 4, 1, 0])
    # item 2 ties with item 3 and is beaten by item 4: rank 3; item 0 is unknown: rank n_items
    assert rank_of_targets(scores, target).tolist() == [3, 1, 4, 4]


def test_constant_scores_rank_every_target_last():
    scores = torch.zeros(2, 6)
    scores[:, 0] = -torch.inf
    assert rank_of_targets(scores, torch.tensor([1, 5])).tolist() == [5, 5]


def test_summarize_counts_unknown_items():
    out = summarize(
        pred=np.array([4.0, 2.0]), true=np.array([5.0, 2.0]), ranks=np.array([1, 7]),
        target_known=np.array([True, False]), k=10,
    )  # fmt: skip
    assert out["n_events"] == 2 and out["n_unknown_items"] == 1
    assert out["rmse"] == pytest.approx(math.sqrt(0.5))
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(8)) / 2)
    assert summarize(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool)) == {
        "n_events": 0,
        "n_unknown_items": 0,
    }
