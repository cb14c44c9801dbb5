"""The one interface every recommender implements: trainer, evaluator, A/B stage and app call
nothing else, so a registry swaps models by name.

Ids are dense indices from the split's id maps (`artifacts/split/{users,items}.parquet`):
users 1..n_users and items 1..n_items; index 0 means padding or unknown (a cold user, an
item unseen in training). Times are days (float32), never raw epoch seconds.

Query batch (evaluation, A/B serving, and training of models with training_kind "query"):
    user         (B,)    long   user index, 0 = unknown
    item         (B,)    long   the target item, 0 = unknown
    rating       (B,)    float  its true rating (absent when serving)
    target_gap   (B,)    float  days from the last history event to the target (0: no history)
    hist_item    (B, L)  long   the user's earlier items, oldest -> newest, right-aligned, 0 = pad
    hist_rating  (B, L)  float  their ratings, 0 at padding
    hist_gap     (B, L)  float  days since the previous history event (0 for the first, at pad)
    hist_mask    (B, L)  bool   True where hist_* hold a real event
History for an evaluated event is the user's events with a strictly earlier timestamp.

Sequence batch (training of models with training_kind "sequence"): the hist_* keys and user
as above for B windows of L consecutive training events of one user each, plus
    next_gap       (B, L)  float  days from each event to the user's next (0 at the last)
and M flat targets, each predicted from the state after one window position, as a query's
state is the one after its last strictly earlier event (recsys.training.tensors):
    target_row     (M,)    long   the target's window, 0..B-1
    target_col     (M,)    long   the window position whose state predicts it; -1: none
                                  (a user's first events: the model's empty state)
    target_item    (M,)    long   the target item;  target_rating (M,) float its rating
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel
from torch import nn

Batch = dict[str, torch.Tensor]


def target_states(states: torch.Tensor, batch: Batch, empty_state: torch.Tensor) -> torch.Tensor:
    """Each target's state, (M, H), from window states (B, L, H); col -1: `empty_state`.

    empty_state joins the graph even when no target uses it (DDP's static graph needs every
    parameter in every step); its gradient is then 0.
    """
    row, col = batch["target_row"], batch["target_col"]
    gathered = states[row, col.clamp(min=0)]  # (M, H)
    return torch.where((col >= 0).unsqueeze(-1), gathered, empty_state)


class DataSpec(BaseModel):
    """What a model needs to know about the data; stored in the checkpoint beside its config."""

    n_users: int  # known users; indices 1..n_users (0 = unknown)
    n_items: int  # known items; indices 1..n_items (0 = padding / unknown)
    rating_min: float
    rating_max: float
    rating_mean: float  # of the training ratings


class Recommender(nn.Module):
    """Base class: a rating predictor and a full-ranking next-item scorer.

    Built as `cls(cls.Config(**ckpt["config"]), DataSpec(**ckpt["data"]))`; Config is the
    model's params.yaml section (a pydantic model in recsys.config).
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    training_kind: ClassVar[Literal["query", "sequence"]] = "query"
    # What a query's state depends on: "user" (its user index alone) or "history" (its history
    # window and the time of its target: the same for same-second siblings of one user).
    context: ClassVar[Literal["user", "history"]] = "user"

    def loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss on a batch of this model's training_kind."""
        raise NotImplementedError

    def predict_rating(self, batch: Batch) -> torch.Tensor:
        """Predicted rating of each query's target item, (B,)."""
        return self.rate(self.query_state(batch), batch["item"])

    def score_items(self, batch: Batch) -> torch.Tensor:
        """Scores of every item for each query, (B, n_items + 1); column 0 is -inf."""
        return self.rank_scores(self.query_state(batch))

    # Both answers go through the query's state: what they depend on besides the target item.
    # Queries with the same context (`context`) have the same state, so a scorer encodes each
    # distinct context once (recsys.training.scoring) and rates and ranks every query from it.
    def query_state(self, batch: Batch) -> torch.Tensor:
        """The state each query is answered from, (B, ...): a function of its `context` only."""
        raise NotImplementedError

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted rating of `item` (B,) for queries in `state` (B, ...), (B,)."""
        raise NotImplementedError

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        """Scores of every item for queries in `state` (B, ...), (B, n_items + 1), column 0 -inf."""
        raise NotImplementedError
