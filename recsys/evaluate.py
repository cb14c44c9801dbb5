"""`evaluate@{model}` stage: rating and full-ranking metrics on val and test, warm and cold apart.

Every val / test event is a query whose history is the user's events with a strictly earlier
timestamp, from train, val and earlier test rows (same-second siblings are not history). RMSE
and MAE score the predicted rating; HR@10, NDCG@10 and MRR@10 the rank of the true item among
all n_items training items (no item is masked out; ties count against the model). Items unseen
in training cannot be ranked and get rank n_items; their count is in the file. Warm users have
a training rating, cold users none. The global-mean and user+item-bias baselines are evaluated
in the same run as sanity rows.

    python -m recsys.evaluate --model ncf --checkpoint models/ncf.pt --split artifacts/split \
        --metrics metrics/eval/ncf.json --predictions artifacts/predictions/ncf.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from tqdm import tqdm

from recsys.batches import EventLog, QuerySet, SplitData, batch_to, iterate_batches, load_split
from recsys.checkpoint import load_model
from recsys.config import BiasParams, MeanParams, TrainParams, load_params
from recsys.errors import RecsysError, run_reporting_errors
from recsys.io import write_json, write_parquet
from recsys.metrics import rank_of_targets, summarize
from recsys.models.base import Recommender
from recsys.models.baselines import ClosedFormRecommender, GlobalMean, UserItemBias
from recsys.models.registry import model_class

K = 10
NOTES = {
    "history": "the user's events with a strictly earlier timestamp (train, val and earlier "
    "test rows); same-second siblings are not history",
    "ranking": "full ranking over all n_items training items, nothing masked; rank = items "
    "scoring at least as high as the true item (ties count against the model)",
    "unknown_items": "true items unseen in training cannot be ranked: rank n_items, counted "
    "in n_unknown_items",
    "cold": "users with no training rating",
}


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


def fit_baselines(data: SplitData, bias: BiasParams) -> dict[str, ClosedFormRecommender]:
    """The sanity baselines, fitted in closed form on every training event."""
    from recsys.batches import query_train_set

    train_set = query_train_set(data)
    everything = train_set.batch(torch.arange(len(train_set)))
    models = {"mean": GlobalMean(MeanParams(), data.spec), "bias": UserItemBias(bias, data.spec)}
    for model in models.values():
        model.fit(everything)
    return models


def evaluate_parts(
    model: Recommender, config: BaseModel, log: EventLog, train: TrainParams, device: torch.device
) -> dict[str, Scored]:
    """The model scored on val and test queries."""
    max_len = history_len(model, config, train)
    model.to(device)
    scored = {}
    for part in ("val", "test"):
        queries = QuerySet(log, log.rows_of(part), max_len)
        desc = f"{model.name} {part}"
        scored[part] = score_queries(model, queries, train.eval_batch_size, device, desc=desc)
    return scored


def predictions_frame(test: pd.DataFrame, scored: Scored) -> pd.DataFrame:
    """One row per test event: raw ids, time, true and predicted rating, rank."""
    return pd.DataFrame(
        {
            "user_id": test["user_id"].to_numpy(),
            "item_id": test["item_id"].to_numpy(),
            "timestamp": test["timestamp"].to_numpy(),
            "rating": test["rating"].to_numpy(dtype=np.float64),
            "pred_rating": scored.pred_rating.astype(np.float64),
            "rank": scored.rank.astype(np.int64),
        }
    )


def evaluate_checkpoint(
    *,
    checkpoint: Path,
    split_dir: Path,
    metrics_path: Path,
    predictions_path: Path,
    train: TrainParams,
    bias: BiasParams,
    model_name: str | None = None,
) -> dict:
    """Evaluate a checkpoint and the baselines; write the metrics JSON and test predictions."""
    from recsys.train import resolve_device, seed_everything

    seed_everything(train)
    model, ckpt = load_model(checkpoint)
    if model_name is not None and ckpt["model"] != model_name:
        raise RecsysError(f"{checkpoint}: holds model {ckpt['model']!r}, not {model_name!r}")
    data = load_split(split_dir)
    if ckpt.get("data_fingerprint") not in (None, data.fingerprint):
        raise RecsysError(
            f"{checkpoint}: trained on another split (train.parquet md5 differs); retrain it"
        )
    log, device = EventLog(data), resolve_device(train.device)
    scored = evaluate_parts(
        model, model_class(ckpt["model"]).Config(**ckpt["config"]), log, train, device
    )
    report = {part: metrics_of(s) for part, s in scored.items()}
    report["baselines"] = {
        name: {
            part: metrics_of(s)
            for part, s in evaluate_parts(b, b.config, log, train, device).items()
        }
        for name, b in fit_baselines(data, bias).items()
    }
    report |= {"model": ckpt["model"], "n_items": data.spec.n_items, "notes": NOTES}
    write_json(metrics_path, report)
    write_parquet(predictions_path, predictions_frame(data.test, scored["test"]))
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, evaluate, print a summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--model", required=True, help="registry name the checkpoint must hold")
    parser.add_argument("--checkpoint", type=Path, required=True, help="models/<model>.pt")
    parser.add_argument("--split", type=Path, required=True, help="the split folder")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, required=True, help="test predictions parquet")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        params = load_params(args.params)
        started = time.perf_counter()
        report = evaluate_checkpoint(
            checkpoint=args.checkpoint, split_dir=args.split, metrics_path=args.metrics,
            predictions_path=args.predictions, train=params.train, bias=params.bias,
            model_name=args.model,
        )  # fmt: skip
        test = report["test"]
        print(
            f"evaluate {args.model}: test rmse {test['rmse']:.4f}, ndcg@{K} {test[f'ndcg@{K}']:.4f}"
            f", hr@{K} {test[f'hr@{K}']:.4f} ({test['n_events']:,} events, "
            f"{time.perf_counter() - started:.1f} s) -> {args.metrics}"
        )
        return 0

    return run_reporting_errors(f"evaluate {args.model}", body)


if __name__ == "__main__":
    sys.exit(main())
