"""Small datasets with one planted sequential rule, to test that a model can learn it.

`first_order`: after a share `p_rule` of events the next item is a fixed function of the
previous one (a random permutation of the items); otherwise an unseen item at random. A
first-order transition counter (`markov`) learns this from train; a sequence model that
does not has a defect in its training or evaluation path, not a modelling limit.

`gap_switch`: the rule depends on the time gap: after a gap under `short_gap_s` the next item
is `short[prev]`, after a longer gap `long[prev]` (two unrelated permutations). Only a model
that sees the gap to the target can tell which applies; the order alone gives 50/50.

Every user's events have distinct timestamps (no same-second ties), so "previous" means the
same thing in any protocol. Written as the canonical CSVs (`recsys.data.canonical`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.canonical import write_canonical

START_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z
HOUR, DAY = 3_600, 86_400  # seconds


@dataclass(frozen=True)
class Planted:
    """Sizes and strength of a planted dataset."""

    users: int = 600
    items: int = 600
    events_per_user: int = 48
    p_rule: float = 0.8
    short_gap_s: int = HOUR
    seed: int = 0


def first_order(cfg: Planted) -> pd.DataFrame:
    """Ratings where next = rule[prev] with probability p_rule (one rule, any gap)."""
    rng = np.random.default_rng(cfg.seed)
    rule = rng.permutation(cfg.items)
    return _sequences(cfg, rng, lambda prev, short: rule[prev])


def gap_switch(cfg: Planted) -> pd.DataFrame:
    """Ratings where next = short[prev] after a short gap, long[prev] after a long one."""
    rng = np.random.default_rng(cfg.seed)
    short_rule, long_rule = rng.permutation(cfg.items), rng.permutation(cfg.items)
    return _sequences(cfg, rng, lambda prev, short: np.where(short, short_rule, long_rule)[prev])


def _sequences(cfg: Planted, rng: np.random.Generator, rule) -> pd.DataFrame:
    """Each user's events in time order; the rule applies where it gives an unseen item."""
    rows = []
    for user in range(1, cfg.users + 1):
        n = cfg.events_per_user
        short = rng.random(n) < 0.5  # the gap before event t is short (< short_gap_s)
        gaps = np.where(short, rng.integers(60, cfg.short_gap_s, n), rng.integers(2, 30, n) * DAY)
        seconds = START_EPOCH + rng.integers(0, 365 * DAY) + np.cumsum(gaps)
        items, seen = [int(rng.integers(cfg.items))], set()
        seen.add(items[0])
        follow = rng.random(n) < cfg.p_rule
        for t in range(1, n):
            nxt = int(rule(items[-1], short[t]))
            if not follow[t] or nxt in seen:
                nxt = int(rng.choice(np.setdiff1d(np.arange(cfg.items), list(seen))))
            items.append(nxt)
            seen.add(nxt)
        stars = rng.integers(1, 6, n)
        rows.append(np.stack([np.full(n, user), np.array(items) + 1, stars, seconds], 1))
    table = np.concatenate(rows)
    return pd.DataFrame(
        {
            "user_id": table[:, 0],
            "item_id": table[:, 1],
            "rating": table[:, 2].astype(float),
            "timestamp": table[:, 3],
        }
    )


PLANTED = {"first-order": first_order, "gap-switch": gap_switch}


def write_planted(kind: str, cfg: Planted, out_dir: Path) -> int:
    """Write the planted dataset `kind` as canonical CSVs in out_dir; returns its rows."""
    ratings = PLANTED[kind](cfg)
    movies = pd.DataFrame(
        {
            "item_id": np.arange(1, cfg.items + 1),
            "title": [f"Planted {i:04d} (2000)" for i in range(1, cfg.items + 1)],
            "genres": "Drama",
        }
    )
    write_canonical(ratings, movies, out_dir)
    return len(ratings)
