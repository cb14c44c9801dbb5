"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation", ICDM).

(item [+ rating] + position) embeddings -> dropout -> N x pre-LN causal self-attention block
-> LayerNorm -> state; next-item scores = state @ item embeddings (shared with the input).

Order only: the model never reads a time gap. A learned position counts from the oldest real
event of the window (0 = oldest), as RecBole's does: left padding never shifts a real event's
position, a window's width does not change its states, and the state at every position of a
training window is encoded as a query with that history would be. Padded keys are masked out
of attention; a padded query attends to itself only (a row with nothing to attend to would
give NaN), and the states at padded positions are never read.

Deviations from the paper: full-softmax cross-entropy over every item instead of binary
cross-entropy with one sampled negative (as RecBole's CE option); a rating head (concat(state,
item embedding) -> MLP, + item bias + rating mean, as SS4Rec's) trained with weight
`rating_weight`; an optional embedding of the centred history rating (`use_rating_input`);
a learned `empty_state` for queries with no history (see `loss`); every pre-LN sublayer
normalises its whole input (the official code normalises the attention queries only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import SASRecParams
from recsys.models.base import Batch, DataSpec, Recommender, target_states


class AttentionBlock(nn.Module):
    """x + Dropout(SelfAttention(LN(x))), then x + Dropout(FFN(LN(x))); FFN as in the paper."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.attn_dropout = n_heads, dropout
        self.norm_attn, self.norm_ffn = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, L, H), allowed (B, 1, L, L) True where query i may attend to key j -> (B, L, H)."""
        b, length, hidden = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(b, length, 3, self.n_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, H / heads)
        p = self.attn_dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(b, length, hidden)))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


class SASRec(Recommender):
    """SASRec with a next-item head (full softmax) and a rating head."""

    name = "sasrec"
    Config = SASRecParams
    training_kind = "sequence"
    context = "history"

    def __init__(self, cfg: SASRecParams, data: DataSpec) -> None:
        super().__init__()
        self.cfg, self.data = cfg, data
        hidden = cfg.d_model
        self.item_emb = nn.Embedding(data.n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, hidden)  # index 0 = the oldest real event
        # of the centred rating; absent (and hist_rating never read) when use_rating_input is off
        self.rating_emb = nn.Linear(1, hidden) if cfg.use_rating_input else None
        self.input_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            AttentionBlock(hidden, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.final_norm = nn.LayerNorm(hidden)
        self.empty_state = nn.Parameter(torch.zeros(hidden))  # a query with no history
        self.item_bias = nn.Embedding(data.n_items + 1, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.rating_head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, 1)
        )
        nn.init.normal_(self.item_emb.weight[1:], std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        if self.rating_emb is not None:  # at the items' scale (see SS4Rec: it drowned them)
            nn.init.normal_(self.rating_emb.weight, std=0.02)
            nn.init.zeros_(self.rating_emb.bias)

    def _crop(self, batch: Batch) -> Batch:
        """The newest max_len columns of every (B, L) key: the positions the model knows."""
        keep = self.cfg.max_len
        return {
            k: v[:, -keep:] if k.startswith(("hist_", "next_")) else v for k, v in batch.items()
        }

    def _encode(self, batch: Batch) -> torch.Tensor:
        """States after every history position, (B, L, H); L <= max_len, at least 1 column."""
        item, mask = batch["hist_item"], batch["hist_mask"]  # (B, L)
        length = item.shape[1]
        position = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, L): the oldest real event = 0
        x = self.item_emb(item * mask) + self.pos_emb(position)  # (B, L, H)
        if self.rating_emb is not None:
            rating = (batch["hist_rating"] - self.data.rating_mean) * mask
            x = x + self.rating_emb(rating.unsqueeze(-1))
        x = self.input_dropout(x) * mask.unsqueeze(-1)
        eye = torch.eye(length, dtype=torch.bool, device=item.device)
        causal = torch.ones_like(eye).tril()  # (L, L) key j <= query i
        allowed = (causal & (mask.unsqueeze(1) | eye)).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed) * mask.unsqueeze(-1)
        return self.final_norm(x)

    def query_state(self, batch: Batch) -> torch.Tensor:
        """The state after each query's newest history event, (B, H); no history: empty_state."""
        batch = self._crop(batch)
        mask = batch["hist_mask"]
        if mask.shape[1] == 0:
            return self.empty_state.expand(mask.shape[0], -1)
        last = self._encode(batch)[:, -1]  # right-aligned: newest event last
        return torch.where(mask.any(dim=1, keepdim=True), last, self.empty_state)

    def _rating(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Rating of `item` given `state`: (..., H), (...) -> (...)."""
        features = torch.cat([state, self.item_emb(item)], dim=-1)
        bias = self.item_bias(item).squeeze(-1) + self.data.rating_mean
        return self.rating_head(features).squeeze(-1) + bias

    def _item_logits(self, state: torch.Tensor) -> torch.Tensor:
        """Next-item scores over all items, (..., n_items + 1), column 0 = -inf."""
        logits = state @ self.item_emb.weight.T
        logits[..., 0] = -math.inf
        return logits

    def loss(self, batch: Batch) -> torch.Tensor:
        """Next-item CE + rating_weight · rating MSE over the batch's targets.

        Each target is predicted from the state after its last strictly earlier event (a
        query's state), a user's first events from `empty_state` (recsys.models.base).
        """
        batch = self._crop(batch)
        states = self._encode(batch)  # (B, L, H)
        if len(batch["target_item"]) == 0:  # nothing to predict: a zero that backpropagates
            return states.sum() * 0.0 + self.empty_state.sum() * 0.0
        state = target_states(states, batch, self.empty_state)  # (M, H)
        target = batch["target_item"]
        loss = F.cross_entropy(self._item_logits(state), target)
        if self.cfg.rating_weight > 0:
            error = self._rating(state, target) - batch["target_rating"]
            loss = loss + self.cfg.rating_weight * error.pow(2).mean()
        return loss

    def rate(self, state: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted rating of each query's target, clamped to the rating scale, (B,)."""
        return self._rating(state, item).clamp(self.data.rating_min, self.data.rating_max)

    def rank_scores(self, state: torch.Tensor) -> torch.Tensor:
        """Next-item scores of every item for each query state, (B, n_items + 1)."""
        return self._item_logits(state)
