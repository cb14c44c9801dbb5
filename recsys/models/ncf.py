"""NCF / NeuMF (He et al. 2017): GMF ⊕ MLP towers, a rating head and a ranking head.

The rating head adds a global mean and user/item biases (explicit feedback, MSE); the ranking
head is NeuMF's logit, trained with BCE against uniformly sampled negative items. Index 0 is
an unknown user or item: during training ids are replaced by 0 with probability
`unknown_prob`, so row 0 of every table learns the fallback for a cold user or a new item.
History keys are ignored (training_kind "query").
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import NCFParams
from recsys.models.base import Batch, DataSpec, Recommender


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Dropout(dropout), nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers)


class NCF(Recommender):
    """NeuMF with a rating head (mean + biases + linear) and a ranking head (logit)."""

    name = "ncf"
    Config = NCFParams
    training_kind = "query"

    def __init__(self, cfg: NCFParams, data: DataSpec) -> None:
        super().__init__()
        self.cfg, self.data = cfg, data
        n_users, n_items = data.n_users + 1, data.n_items + 1  # row 0: unknown
        self.user_gmf, self.item_gmf = (
            nn.Embedding(n_users, cfg.gmf_dim),
            nn.Embedding(n_items, cfg.gmf_dim),
        )
        self.user_mlp, self.item_mlp = (
            nn.Embedding(n_users, cfg.mlp_dim),
            nn.Embedding(n_items, cfg.mlp_dim),
        )
        self.user_bias, self.item_bias = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        # the first MLP layer is split into its user and item halves (so score_items can
        # project every item once); the rest is a plain tower
        first = cfg.mlp_layers[0]
        self.mlp_first_user = nn.Linear(cfg.mlp_dim, first)
        self.mlp_first_item = nn.Linear(cfg.mlp_dim, first, bias=False)
        self.mlp_rest = _mlp(cfg.mlp_layers, cfg.dropout)
        fused = cfg.gmf_dim + cfg.mlp_layers[-1]
        self.rating_head, self.rank_head = nn.Linear(fused, 1), nn.Linear(fused, 1)
        for table in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(table.weight, std=0.01)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def _fused(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """NeuMF's fused vector for broadcastable user (...,) and item (...,) ids."""
        gmf = self.user_gmf(user) * self.item_gmf(item)  # (..., gmf_dim)
        first = self.mlp_first_user(self.user_mlp(user)) + self.mlp_first_item(self.item_mlp(item))
        return torch.cat([gmf, self.mlp_rest(F.relu(first))], dim=-1)

    def _rating(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        bias = self.user_bias(user).squeeze(-1) + self.item_bias(item).squeeze(-1)
        head = self.rating_head(self._fused(user, item)).squeeze(-1)
        return self.data.rating_mean + bias + head

    def _hide_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Training only: replace ids by 0 (unknown) with probability unknown_prob."""
        hide = torch.rand(ids.shape, device=ids.device) < self.cfg.unknown_prob
        return ids.masked_fill(hide, 0)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Rating MSE + rank_weight · BCE(positive vs n_negatives sampled items)."""
        user, item = self._hide_ids(batch["user"]), self._hide_ids(batch["item"])
        rating_loss = F.mse_loss(self._rating(user, item), batch["rating"].float())
        if self.cfg.rank_weight == 0:
            return rating_loss
        negatives = torch.randint(  # (B, n_negatives), uniform over known items
            1, self.data.n_items + 1, (item.shape[0], self.cfg.n_negatives), device=item.device
        )
        candidates = torch.cat([batch["item"].unsqueeze(1), negatives], dim=1)  # (B, 1 + k)
        logits = self.rank_head(self._fused(user.unsqueeze(1), candidates)).squeeze(-1)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return rating_loss + self.cfg.rank_weight * F.binary_cross_entropy_with_logits(
            logits, labels
        )

    def query_state(self, batch: Batch) -> torch.Tensor:
        """The user index (B,): NCF reads no history."""
        return batch["user"]

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted rating of each (user, item), clamped to the rating scale, (B,)."""
        rating = self._rating(state, item)
        return rating.clamp(self.data.rating_min, self.data.rating_max)

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        """Ranking logits of every item for each user in `state` (B,), (B, n_items + 1)."""
        user = state
        gmf = self.user_gmf(user).unsqueeze(1) * self.item_gmf.weight  # (B, I, gmf_dim)
        first_user = self.mlp_first_user(self.user_mlp(user)).unsqueeze(1)  # (B, 1, h)
        first_item = self.mlp_first_item(self.item_mlp.weight)  # (I, h)
        mlp = self.mlp_rest(F.relu(first_user + first_item))  # (B, I, h_last)
        scores = self.rank_head(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)  # (B, I)
        scores[:, 0] = float("-inf")
        return scores
