"""Realistic fake inputs for the A/B stage: daily batches and two models' prediction files.

Used by the tests and `recsys bench ab` where the real evaluation outputs are not there. The
shape follows ml-100k's test split: few users with many events each, bursts of ratings in
sessions, ratings 1..5; model B's errors and ranks are shifted by `effect` (0: an A/A test).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.abtest.outcomes import KEY, batch_path
from recsys.io import write_parquet

DAY_SECONDS = 86_400
START = 891_302_400  # 1998-03-31, where ml-100k's test split starts


@dataclass(frozen=True)
class FakeExperiment:
    """Daily batches (user_id, item_id, rating, timestamp) and both prediction frames."""

    batches: list[pd.DataFrame]
    predictions_a: pd.DataFrame
    predictions_b: pd.DataFrame


def _events(n_events: int, n_users: int, n_items: int, n_days: int, rng) -> pd.DataFrame:
    """Unique (user, item, timestamp) events in bursts around each user's active days."""
    target, n_events = n_events, int(n_events * 1.02) + 10  # room for duplicate keys
    weights = rng.pareto(1.2, n_users) + 1  # a few heavy raters, many light ones
    users = rng.choice(n_users, n_events, p=weights / weights.sum()) + 1
    center = rng.uniform(0, n_days, n_users + 1)  # days; each user's activity centre
    spread = rng.exponential(1.5, n_users + 1)
    days = np.clip(center[users] + spread[users] * rng.standard_normal(n_events), 0, n_days)
    timestamps = START + (np.round(days * DAY_SECONDS / 30) * 30).astype(np.int64)  # bursts
    events = pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": rng.integers(1, n_items + 1, n_events).astype(np.int64),
            "rating": rng.integers(1, 6, n_events).astype(float),
            "timestamp": timestamps,
        }
    )
    events = events.drop_duplicates(KEY)
    events = events.iloc[np.sort(rng.choice(len(events), min(target, len(events)), replace=False))]
    return events.sort_values(["timestamp", "user_id", "item_id"], ignore_index=True)


def _predictions(events: pd.DataFrame, n_items: int, shift: float, rng) -> pd.DataFrame:
    """One model's pred_rating and rank; `shift` > 0 makes it better on both."""
    user_bias = rng.normal(0, 0.4, events["user_id"].max() + 1)[events["user_id"]]
    noise = rng.normal(0, 1.0 - 0.5 * shift, len(events))
    pred = np.clip(events["rating"].to_numpy() + user_bias + noise, 1, 5)
    log_rank = rng.normal(np.log(60) - 4 * shift, 1.5, len(events))
    rank = np.clip(np.ceil(np.exp(log_rank)), 1, n_items).astype(np.int64)
    return events.assign(pred_rating=pred, rank=rank)[
        ["user_id", "item_id", "timestamp", "rating", "pred_rating", "rank"]
    ]


def fake_experiment(
    n_events: int = 10_000,
    n_users: int | None = None,
    n_items: int = 1_600,
    n_days: int = 20,
    effect: float = 0.05,
    seed: int = 0,
) -> FakeExperiment:
    """A fake test split cut into n_days equal slices in time order, with A and B predictions."""
    rng = np.random.default_rng(seed)
    n_users = n_users or max(2, n_events // 60)
    events = _events(n_events, n_users, n_items, n_days, rng)
    cuts = np.linspace(0, len(events), n_days + 1).round().astype(int)
    batches = [events.iloc[lo:hi].reset_index(drop=True) for lo, hi in itertools.pairwise(cuts)]
    preds_a = _predictions(events, n_items, 0.0, rng)
    preds_b = _predictions(events, n_items, effect, rng)
    return FakeExperiment(batches, preds_a, preds_b)


def write_experiment(
    experiment: FakeExperiment, batches_dir: Path, predictions_a: Path, predictions_b: Path
) -> None:
    """Write batches/day_NN.parquet and both prediction files."""
    for day, batch in enumerate(experiment.batches, start=1):
        write_parquet(batch_path(batches_dir, day), batch)
    write_parquet(predictions_a, experiment.predictions_a)
    write_parquet(predictions_b, experiment.predictions_b)
