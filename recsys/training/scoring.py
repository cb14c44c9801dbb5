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
    """Events of history a model's queries carry: its config's max_len, else train.max_len.

    None for a model whose answers depend on the user alone (`context` "user").
    """
    if model.context == "user":
        return 0
    return int(getattr(config, "max_len", train.max_len))


@torch.inference_mode()
def score_queries(
    model: Recommender,
    queries: QuerySet,
    batch_size: int,
    device: torch.device,
    desc: str = "",
    rater: Recommender | None = None,
) -> Scored:
    """Predicted rating and full-ranking rank of every query's target item.

    Each distinct context (`model.context`: a user, or a history window with its target time)
    is encoded once, in chunks of similar history length that drop their common left padding
    (a model's state never depends on padding); every query of that context is rated and
    ranked from its state, without autograd. `rater` (the same model class with other weights,
    `checkpoint.load_rater`) encodes the contexts again and predicts the ratings; `model` still
    ranks. Equal to `score_queries_reference` up to float rounding (tests check it on real
    queries).
    """
    model.eval()
    if rater is not None:
        rater.eval()
    first, which = queries.contexts(model.context)
    # contexts by history length, so that a chunk's windows can drop their common left padding
    n_hist = queries.n_hist.numpy()[first] if model.context == "history" else 0 * first
    by_length = np.argsort(n_hist, kind="stable")
    first, rank_of = first[by_length], np.argsort(by_length)
    which = rank_of[which]  # contexts renumbered in that order
    by_context = np.argsort(which, kind="stable")  # queries grouped by context
    bounds = np.searchsorted(which[by_context], np.arange(len(first) + 1))
    preds = torch.zeros(len(queries))
    ranks = torch.zeros(len(queries), dtype=torch.long)
    chunks = range(0, len(first), batch_size)
    for lo in tqdm(chunks, desc=desc, disable=None, leave=False):
        hi = min(lo + batch_size, len(first))
        width = int(n_hist[by_length[hi - 1]])  # the longest history of the chunk
        reps = queries.batch(torch.from_numpy(first[lo:hi]), width=width)
        reps = batch_to(reps, device)
        state = model.query_state(reps)
        scores = model.rank_scores(state).float()  # (G, n_items + 1)
        rating_state = state if rater is None else rater.query_state(reps)
        members = by_context[bounds[lo] : bounds[hi]]  # the queries of contexts lo..hi-1
        for part in np.array_split(members, -(-len(members) // batch_size) or 1):
            local = torch.from_numpy(which[part] - lo).to(device)
            item = queries.log.item[queries.rows[torch.from_numpy(part)]].to(device)
            pred = (rater or model).rate(rating_state[local], item).float()
            if torch.isnan(pred).any() or torch.isnan(scores).any():
                raise RecsysError(f"{model.name} produced NaN scores ({desc or 'evaluation'})")
            preds[part] = pred.cpu()
            ranks[part] = rank_of_targets(scores[local], item).cpu()
    return _scored(queries, preds, ranks)


@torch.no_grad()
def score_queries_reference(
    model: Recommender,
    queries: QuerySet,
    batch_size: int,
    device: torch.device,
    desc: str = "",
    rater: Recommender | None = None,
) -> Scored:
    """score_queries the plain way: every query encoded on its own, twice (rating, ranking).

    The reference the fast path is tested and benchmarked against (`recsys bench eval`).
    """
    model.eval()
    if rater is not None:
        rater.eval()
    preds, ranks = [], []
    n_batches = -(-len(queries) // batch_size)
    batches = iterate_batches(len(queries), batch_size, shuffle=False)
    for idx in tqdm(batches, total=n_batches, desc=desc, disable=None, leave=False):
        batch = batch_to(queries.batch(idx), device)
        pred = (rater or model).predict_rating(batch).float()
        scores = model.score_items(batch).float()
        if torch.isnan(pred).any() or torch.isnan(scores).any():
            raise RecsysError(f"{model.name} produced NaN scores ({desc or 'evaluation'})")
        preds.append(pred.cpu())
        ranks.append(rank_of_targets(scores, batch["item"]).cpu())
    empty = (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    return _scored(queries, *((torch.cat(preds), torch.cat(ranks)) if preds else empty))


def _scored(queries: QuerySet, preds: torch.Tensor, ranks: torch.Tensor) -> Scored:
    whole = queries.batch(torch.arange(len(queries)))
    return Scored(
        pred_rating=preds.numpy(),
        rank=ranks.numpy(),
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
