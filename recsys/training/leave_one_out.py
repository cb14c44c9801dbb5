"""The literature's leave-one-out protocol, beside the pipeline's temporal one.

It follows RecBole's sequential convention (what SASRec / SS4Rec papers report): each user's
events in time order (ties by item id), the last one is test, the second-to-last val, the rest
train (users with fewer than 3 events are train only); history is every event before the
target in that order, same-second siblings included; full ranking over all items. It is NOT
the pipeline's temporal protocol (global time cut, strictly earlier history). `recsys
benchmark --protocol loo` runs it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import Params
from recsys.models.registry import model_class
from recsys.training.checkpoint import load_model
from recsys.training.runtime import resolve_device
from recsys.training.scoring import history_len, metrics_of, score_queries
from recsys.training.tensors import EventLog, QuerySet, SplitData, split_from_frames
from recsys.training.train import model_config, train_model

LOO_KEYS = ("hr@10", "ndcg@10", "mrr@10")


def k_core(ratings: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than k ratings, repeatedly, until none is left."""
    while k > 1:
        users = ratings["user_id"].map(ratings["user_id"].value_counts()) >= k
        items = ratings["item_id"].map(ratings["item_id"].value_counts()) >= k
        if (users & items).all():
            break
        ratings = ratings[users & items]
    return ratings


def loo_split(ratings: pd.DataFrame, min_interactions: int = 0) -> SplitData:
    """Leave-one-out per user: last event test, second-to-last val, the rest train.

    min_interactions > 1 first applies that k-core filter to users and items (RecBole's
    `user_inter_num_interval` / `item_inter_num_interval`, as the official SS4Rec config: 5).
    """
    ratings = k_core(ratings, min_interactions)
    order = np.lexsort((ratings["item_id"], ratings["timestamp"], ratings["user_id"]))
    ratings = ratings.iloc[order].reset_index(drop=True)
    from_end = ratings.groupby("user_id").cumcount(ascending=False)  # 0 = the user's last
    enough = ratings.groupby("user_id")["item_id"].transform("size") >= 3
    test, val = enough & (from_end == 0), enough & (from_end == 1)
    return split_from_frames(ratings[~(test | val)], ratings[val], ratings[test])


def run_loo(
    ratings: pd.DataFrame, models: list[str], params: Params, min_interactions: int = 0
) -> dict[str, dict]:
    """Train each model on the leave-one-out split and rank its test items."""
    data = loo_split(ratings, min_interactions)
    results = {}
    with tempfile.TemporaryDirectory(prefix="recsys-loo-") as tmp:
        for name in models:
            out = Path(tmp) / f"{name}.pt"
            train_model(
                model_name=name, config=model_config(name, params), data=data,
                train=params.train, out=out, history_by="order", use_wandb=False,
            )  # fmt: skip
            results[name] = _loo_test_metrics(out, data, params)
    return results


def _loo_test_metrics(checkpoint: Path, data: SplitData, params: Params) -> dict:
    model, ckpt = load_model(checkpoint)
    config = model_class(ckpt["model"]).Config(**ckpt["config"])
    log, device = EventLog(data, history_by="order"), resolve_device(params.train.device)
    queries = QuerySet(log, log.rows_of("test"), history_len(model, config, params.train))
    model.to(device)
    scored = score_queries(model, queries, params.train.eval_batch_size, device, desc="loo test")
    overall = metrics_of(scored)
    return {**{k: overall[k] for k in LOO_KEYS}, "n_users": overall["n_events"]}
