"""Scoring queries: each query's predicted rating and the rank of its true item, then metrics.

One code path for the evaluate@ stage, validation inside training and the leave-one-out
protocol, so that a val metric during training means what it means in metrics/eval/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel
from tqdm import tqdm

from recsys.config import TrainParams
from recsys.errors import RecsysError
from recsys.models.base import Recommender
from recsys.models.baselines import ClosedFormRecommender
from recsys.training.metrics import rank_of_targets, summarize
from recsys.training.tensors import QuerySet, batch_to, iterate_batches

K = 10  # the cut-off of hr@K, ndcg@K, mrr@K


@dataclass
class Scored:
    """Per-query outputs of a model on a QuerySet."""

    pred_rating: np.ndarray  # (N,) float
    rank: np.ndarray  # (N,) int, 1..n_items
    rating: np.ndarray  # (N,) true rating
    known_item: np.ndarray  # (N,) bool: target item seen in training
    warm: np.ndarray  # (N,) bool: user has a training rating


def history_len(model: Recommender, config: BaseModel, train: TrainParams) -> int:
    """Events of history a model's queries carry: its config's max_len, else train.max_len."""
    if isinstance(model, ClosedFormRecommender):
        return 0  # the baselines read no history
    return int(getattr(config, "max_len", train.max_len))


@torch.no_grad()
def score_queries(
    model: Recommender, queries: QuerySet, batch_size: int, device: torch.device, desc: str = ""
) -> Scored:
    """Predicted rating and full-ranking rank of every query's target item."""
    model.eval()
    preds, ranks = [], []
    n_batches = -(-len(queries) // batch_size)
    batches = iterate_batches(len(queries), batch_size, shuffle=False)
    for idx in tqdm(batches, total=n_batches, desc=desc, disable=None, leave=False):
        batch = batch_to(queries.batch(idx), device)
        pred, scores = model.predict_rating(batch).float(), model.score_items(batch).float()
        if torch.isnan(pred).any() or torch.isnan(scores).any():
            raise RecsysError(f"{model.name} produced NaN scores ({desc or 'evaluation'})")
        preds.append(pred.cpu())
        ranks.append(rank_of_targets(scores, batch["item"]).cpu())
    whole = queries.batch(torch.arange(len(queries)))
    return Scored(
        pred_rating=torch.cat(preds).numpy() if preds else np.zeros(0),
        rank=torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64),
        rating=whole["rating"].numpy(),
        known_item=(whole["item"] > 0).numpy(),
        warm=(whole["user"] > 0).numpy(),
    )


def metrics_of(scored: Scored) -> dict:
    """All metrics of a scored part, then of its warm and cold users apart."""

    def subset(mask: np.ndarray) -> dict:
        return summarize(
            scored.pred_rating[mask], scored.rating[mask], scored.rank[mask],
            scored.known_item[mask], k=K,
        )  # fmt: skip

    everything = np.ones(len(scored.rating), dtype=bool)
    return {**subset(everything), "warm": subset(scored.warm), "cold": subset(~scored.warm)}
