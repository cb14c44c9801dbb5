"""Sanity baselines fitted in closed form: the global mean, user + item biases, transitions.

All rank items for next-item metrics too: `mean` by training popularity (number of ratings),
`bias` by item bias, `markov` by how often each item followed the query's newest history
item in training (popularity breaks ties, and ranks for a query with no history). They have
no gradient training; the trainer calls `fit` once on every training event (query batches;
sequence windows for `markov`) instead of an optimiser loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.config import BiasParams, MarkovParams, MeanParams
from recsys.models.base import Batch, DataSpec, Recommender


class ClosedFormRecommender(Recommender):
    """A recommender fitted in one pass over all training events, without an optimiser."""

    def fit(self, batch: Batch) -> None:
        """Set the parameters from every training event (a query batch)."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        """MSE of the rating predictions (for reporting; fitting is closed form)."""
        return F.mse_loss(self.predict_rating(batch), batch["rating"])

    def query_state(self, batch: Batch) -> torch.Tensor:
        """The user index (B,)."""
        return batch["user"]

    def _item_scores(self, per_item: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        scores = per_item.expand(len(user), -1).clone()  # (B, n_items + 1)
        scores[:, 0] = -torch.inf
        return scores


class GlobalMean(ClosedFormRecommender):
    """Predicts the mean training rating; ranks items by training popularity."""

    name = "mean"
    Config = MeanParams

    def __init__(self, config: MeanParams, data: DataSpec):
        super().__init__()
        self.config, self.data = config, data
        self.register_buffer("mean", torch.tensor(data.rating_mean, dtype=torch.float32))
        self.register_buffer("popularity", torch.zeros(data.n_items + 1))

    def fit(self, batch: Batch) -> None:
        """Mean rating and rating counts per item."""
        self.mean.copy_(batch["rating"].double().mean())
        counts = torch.bincount(batch["item"], minlength=self.data.n_items + 1).float()
        self.popularity.copy_(counts)

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(state)).clone()

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        return self._item_scores(self.popularity, state)


class UserItemBias(ClosedFormRecommender):
    """r = mean + b_user + b_item, biases by regularised alternating least squares.

    Unknown users and items (index 0) have bias 0, so a cold user gets mean + b_item.
    """

    name = "bias"
    Config = BiasParams

    def __init__(self, config: BiasParams, data: DataSpec):
        super().__init__()
        self.config, self.data = config, data
        self.register_buffer("mean", torch.tensor(data.rating_mean, dtype=torch.float32))
        self.register_buffer("user_bias", torch.zeros(data.n_users + 1))
        self.register_buffer("item_bias", torch.zeros(data.n_items + 1))

    def fit(self, batch: Batch) -> None:
        """Alternate item and user bias updates, each the ridge solution given the other."""
        user, item, rating = batch["user"], batch["item"], batch["rating"].double()
        mean = rating.mean()
        user_bias = torch.zeros(self.data.n_users + 1, dtype=torch.float64)
        item_bias = torch.zeros(self.data.n_items + 1, dtype=torch.float64)
        for _ in range(self.config.iterations):
            item_residual = rating - mean - user_bias[user]
            item_bias = _ridge_means(item, item_residual, self.config.reg_item, len(item_bias))
            user_residual = rating - mean - item_bias[item]
            user_bias = _ridge_means(user, user_residual, self.config.reg_user, len(user_bias))
        item_bias[0] = user_bias[0] = 0.0  # unknown ids stay neutral
        self.mean.copy_(mean)
        self.user_bias.copy_(user_bias)
        self.item_bias.copy_(item_bias)

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        raw = self.mean + self.user_bias[state] + self.item_bias[item]
        return raw.clamp(self.data.rating_min, self.data.rating_max)

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        return self._item_scores(self.item_bias, state)


def _ridge_means(
    index: torch.Tensor, residual: torch.Tensor, reg: float, size: int
) -> torch.Tensor:
    """Per-index sum(residual) / (count + reg): the ridge estimate of a per-index offset."""
    sums = torch.zeros(size, dtype=residual.dtype).index_add_(0, index, residual)
    counts = torch.bincount(index, minlength=size).to(residual.dtype)
    return sums / (counts + reg)


class FirstOrderMarkov(ClosedFormRecommender):
    """Ranks the items that followed the newest history item in train; rates the mean.

    Fitted on sequence windows of one event: each training event counts one transition
    from its user's newest strictly earlier training event. A dense (n_items + 1)^2 table: a
    sanity row for catalogues up to MAX_ITEMS items.
    """

    name = "markov"
    Config = MarkovParams
    training_kind = "sequence"
    context = "history"
    MAX_ITEMS = 20_000

    def __init__(self, config: MarkovParams, data: DataSpec):
        super().__init__()
        if data.n_items > self.MAX_ITEMS:
            raise ValueError(f"markov: {data.n_items} items > {self.MAX_ITEMS} (dense table)")
        self.config, self.data = config, data
        self.register_buffer("mean", torch.tensor(data.rating_mean, dtype=torch.float32))
        n = data.n_items + 1
        self.register_buffer("transitions", torch.zeros(n, n))  # [previous, next] counts

    def fit(self, batch: Batch) -> None:
        """Count (newest earlier item -> target) over all targets; row 0: item popularity."""
        row, col, target = batch["target_row"], batch["target_col"], batch["target_item"]
        has_prev = col >= 0
        prev = batch["hist_item"][row[has_prev], col[has_prev]]
        n = self.data.n_items + 1
        pairs = prev * n + target[has_prev]
        counts = torch.bincount(pairs, minlength=n * n).float().view(n, n)
        popularity = torch.bincount(target, minlength=n).float()  # every training event
        counts[0] = popularity  # no history: popularity
        # popularity / (max + 1) < 1 orders items with equal transition counts
        self.transitions.copy_(counts + popularity / (popularity.max() + 1))

    def loss(self, batch: Batch) -> torch.Tensor:
        """MSE of the mean rating on the targets' ratings (for reporting)."""
        ratings = batch["target_rating"]
        return F.mse_loss(self.mean.expand(len(ratings)), ratings)

    def query_state(self, batch: Batch) -> torch.Tensor:
        """The newest history item (B,); 0 when the query has no history."""
        hist = batch["hist_item"]
        if hist.shape[1] == 0:
            return torch.zeros(hist.shape[0], dtype=torch.long, device=hist.device)
        return torch.where(batch["hist_mask"][:, -1], hist[:, -1], 0)

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(state)).clone()

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        scores = self.transitions[state].clone()  # (B, n_items + 1)
        scores[:, 0] = -torch.inf
        return scores
