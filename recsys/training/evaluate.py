"""`evaluate@{model}` stage: rating and full-ranking metrics on val and test, warm and cold apart.

Every val / test event is a query whose history is the user's events with a strictly earlier
timestamp, from train, val and earlier test rows (same-second siblings are not history). RMSE
and MAE score the predicted rating; HR@10, NDCG@10 and MRR@10 the rank of the true item among
all n_items training items (no item is masked out; ties count against the model). Ranks come
from the checkpoint's best epoch by the early-stop metric, predicted ratings from its epoch
with the lowest val RMSE (recsys.training.state). Items unseen in training cannot be ranked
and get rank n_items; their count is in the file. Warm users have a training rating, cold
users none. The global-mean and user+item-bias baselines are evaluated
in the same run as sanity rows.

    python -m recsys.training.evaluate --model ncf --checkpoint models/ncf.pt \
        --split artifacts/split --metrics metrics/eval/ncf.json \
        --scores metrics/scores/ncf.json --predictions artifacts/predictions/ncf.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from recsys.config import BiasParams, MarkovParams, MeanParams, TrainParams, load_params
from recsys.errors import RecsysError, run_reporting_errors
from recsys.io import write_json, write_parquet
from recsys.models.base import Recommender
from recsys.models.baselines import (
    ClosedFormRecommender,
    FirstOrderMarkov,
    GlobalMean,
    UserItemBias,
)
from recsys.models.registry import model_class
from recsys.training.checkpoint import load_model, load_rater
from recsys.training.runtime import keep_freed_memory, resolve_device, seed_everything
from recsys.training.scoring import K, Scored, history_len, metrics_of, score_queries
from recsys.training.tensors import (
    EventLog,
    QuerySet,
    SplitData,
    load_split,
    query_train_set,
    sequence_train_set,
)

NOTES = {
    "history": "the user's events with a strictly earlier timestamp (train, val and earlier "
    "test rows); same-second siblings are not history",
    "ranking": "full ranking over all n_items training items, nothing masked; rank = items "
    "scoring at least as high as the true item (ties count against the model)",
    "unknown_items": "true items unseen in training cannot be ranked: rank n_items, counted "
    "in n_unknown_items",
    "cold": "users with no training rating",
    "epochs": "ranks come from the epoch with the best early-stop metric on val, predicted "
    "ratings (rmse, mae) from the epoch with the lowest val rmse",
}


def fit_baselines(
    data: SplitData, log: EventLog, bias: BiasParams
) -> dict[str, ClosedFormRecommender]:
    """The sanity baselines, fitted in closed form on every training event.

    `markov` (first-order transitions) only up to its dense table's catalogue size.
    """
    queries = query_train_set(data)
    everything = queries.batch(torch.arange(len(queries)))
    models = {"mean": GlobalMean(MeanParams(), data.spec), "bias": UserItemBias(bias, data.spec)}
    for model in models.values():
        model.fit(everything)
    if data.spec.n_items <= FirstOrderMarkov.MAX_ITEMS:
        markov = FirstOrderMarkov(MarkovParams(), data.spec)
        windows = sequence_train_set(log, markov.config.max_len)
        markov.fit(windows.batch(torch.arange(len(windows))))
        models["markov"] = markov
    return models


def evaluate_parts(
    model: Recommender,
    config: BaseModel,
    log: EventLog,
    train: TrainParams,
    device: torch.device,
    rater: Recommender | None = None,
) -> dict[str, Scored]:
    """The model scored on val and test queries (ratings by `rater` where given)."""
    max_len = history_len(model, config, train)
    for part in (model, rater):
        if part is not None:
            part.to(device)
    scored = {}
    for part in ("val", "test"):
        queries = QuerySet(log, log.rows_of(part), max_len)
        scored[part] = score_queries(
            model, queries, train.eval_batch_size, device, desc=f"{model.name} {part}", rater=rater
        )
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
    seed_everything(train)
    keep_freed_memory()
    model, ckpt = load_model(checkpoint)
    if model_name is not None and ckpt["model"] != model_name:
        raise RecsysError(f"{checkpoint}: holds model {ckpt['model']!r}, not {model_name!r}")
    data = load_split(split_dir)
    if ckpt.get("data_fingerprint") not in (None, data.fingerprint):
        raise RecsysError(
            f"{checkpoint}: trained on another split (train.parquet md5 differs); retrain it"
        )
    log, device = EventLog(data), resolve_device(train.device)
    config = model_class(ckpt["model"]).Config(**ckpt["config"])
    scored = evaluate_parts(model, config, log, train, device, rater=load_rater(ckpt))
    report = {part: metrics_of(s) for part, s in scored.items()}
    report["baselines"] = {
        name: {
            part: metrics_of(s)
            for part, s in evaluate_parts(b, b.config, log, train, device).items()
        }
        for name, b in fit_baselines(data, log, bias).items()
    }
    epochs = {"ranking": ckpt.get("epoch"), "rating": ckpt.get("rating_epoch", ckpt.get("epoch"))}
    report |= {
        "model": ckpt["model"], "n_items": data.spec.n_items, "epochs": epochs, "notes": NOTES
    }  # fmt: skip
    write_json(metrics_path, report)
    write_parquet(predictions_path, predictions_frame(data.test, scored["test"]))
    return report


HEADLINE = ("rmse", "mae", "hr@10", "ndcg@10", "mrr@10")


def headline(report: dict) -> dict:
    """The model's own val and test metrics, all users (what `dvc exp show` compares runs by)."""
    return {part: {m: report[part][m] for m in HEADLINE} for part in ("val", "test")}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, evaluate, print a summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.training.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--model", required=True, help="registry name the checkpoint must hold")
    parser.add_argument("--checkpoint", type=Path, required=True, help="models/<model>.pt")
    parser.add_argument("--split", type=Path, required=True, help="the split folder")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", type=Path, required=True, help="test predictions parquet")
    parser.add_argument("--scores", type=Path, default=None, help="headline metrics (DVC metric)")
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
        if args.scores is not None:
            write_json(args.scores, headline(report))
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
