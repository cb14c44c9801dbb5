"""Rating and ranking metrics: RMSE, MAE, and HR / NDCG / MRR at k from 1-based ranks.

Ranks come from full ranking over all n_items known items (`rank_of_targets`): the rank of the
true item is the number of items scoring at least as high as it, itself included, so ties are
counted against the model (a constant scorer ranks every target last, not first). A target item
unseen in training (index 0) cannot be scored: it gets the worst rank, n_items.
"""

from __future__ import annotations

import numpy as np
import torch


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(true, float)) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(true, float))))


def hit_rate_at(ranks: np.ndarray, k: int) -> float:
    """Share of targets ranked in the top k (HR@k = Recall@k with one relevant item)."""
    return float(np.mean(np.asarray(ranks) <= k))


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1 / log2(rank + 1) inside the top k, else 0."""
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def mrr_at(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, 0 outside the top k."""
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0)))


def rank_of_targets(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among items 1..n; (B, n+1) scores, (B,) target -> (B,)."""
    n_items = scores.shape[1] - 1
    item_scores = scores[:, 1:]  # (B, n) column 0 is padding
    target_score = scores.gather(1, target[:, None])  # (B, 1)
    ranks = (item_scores >= target_score).sum(dim=1)  # itself included: ties count against it
    return torch.where(target > 0, ranks, n_items)


def summarize(
    pred: np.ndarray, true: np.ndarray, ranks: np.ndarray, target_known: np.ndarray, k: int = 10
) -> dict:
    """Every metric of a set of events, with its counts."""
    if len(true) == 0:
        return {"n_events": 0, "n_unknown_items": 0}
    return {
        "rmse": rmse(pred, true),
        "mae": mae(pred, true),
        f"hr@{k}": hit_rate_at(ranks, k),
        f"ndcg@{k}": ndcg_at(ranks, k),
        f"mrr@{k}": mrr_at(ranks, k),
        "n_events": len(true),
        "n_unknown_items": int(np.sum(~np.asarray(target_known, bool))),
    }
