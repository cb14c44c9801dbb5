"""Serving day N and per-user outcomes: joins, per-event outcomes, per-user aggregates, arms.

Serving day N = joining the rows of `batches/day_NN.parquet` with both models' per-event
predictions (`artifacts/predictions/<model>.parquet`) on (user_id, item_id, timestamp). The
evaluation computed those predictions with history = every strictly earlier event and frozen
weights, which is exactly what serving day N means, so every figure can be recomputed from
the two files. A day row without a prediction is an error naming the file and the row.

Per-event outcomes: sq_err = (pred - rating)², abs_err = |pred - rating|, hit@10 = rank ≤ 10,
ndcg@10 = 1/log2(rank + 1) if rank ≤ 10 else 0, rr@10 = 1/rank if rank ≤ 10 else 0. The unit
of analysis is the user (Kohavi et al. ch. 17-18): each user's events are averaged first, so
RMSE-like ratio-of-sums metrics become one mean squared error per user.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import RecsysError

KEY = ["user_id", "item_id", "timestamp"]
BATCH_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
PREDICTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "pred_rating", "rank")
LOWER_IS_BETTER = frozenset({"sq_err", "abs_err"})
TOP_K = 10


def batch_path(batches_dir: Path, day: int) -> Path:
    """Where day N's batch lives: batches/day_NN.parquet."""
    return Path(batches_dir) / f"day_{day:02d}.parquet"


def _read_parquet(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read the needed columns of a parquet file; a missing file or column is one line."""
    if not path.is_file():
        raise RecsysError(f"{path}: {what} not found")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RecsysError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame[list(columns)].reset_index(drop=True)


def read_batch(batches_dir: Path, day: int) -> pd.DataFrame:
    """Day N's events (user_id, item_id, rating, timestamp) with a `day` column."""
    path = batch_path(batches_dir, day)
    batch = _read_parquet(path, BATCH_COLUMNS, f"batch of day {day} (did its ETL stage pass?)")
    return batch.assign(day=day)


def read_predictions(path: Path) -> pd.DataFrame:
    """A model's per-event predictions; a duplicated (user, item, timestamp) is an error."""
    preds = _read_parquet(Path(path), PREDICTION_COLUMNS, "predictions")
    dup = preds.duplicated(KEY, keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise RecsysError(f"{path}: row {row} repeats the (user_id, item_id, timestamp) of a row")
    bad = ~(preds["rank"] >= 1) | preds["pred_rating"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise RecsysError(f"{path}: row {row}: rank must be >= 1 and pred_rating present")
    return preds


def _join_one(events: pd.DataFrame, preds: pd.DataFrame, path: Path, tag: str) -> pd.DataFrame:
    """Attach one model's pred_rating and rank to every event, or name the first miss."""
    renamed = preds.rename(
        columns={"rating": f"rating_{tag}", "pred_rating": f"pred_{tag}", "rank": f"rank_{tag}"}
    )
    joined = events.merge(renamed, on=KEY, how="left", validate="many_to_one")
    missing = joined[f"pred_{tag}"].isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        row = joined.iloc[i]
        raise RecsysError(
            f"{path}: no prediction for {batch_path(Path('batches'), int(row['day'])).name} "
            f"row {int(row['row'])} (user_id={row['user_id']}, item_id={row['item_id']}, "
            f"timestamp={row['timestamp']})"
        )
    mismatch = joined[f"rating_{tag}"].to_numpy() != joined["rating"].to_numpy()
    if mismatch.any():
        row = joined.iloc[int(np.flatnonzero(mismatch)[0])]
        raise RecsysError(
            f"{path}: rating {row[f'rating_{tag}']} differs from the batch's {row['rating']} "
            f"for day {int(row['day'])} row {int(row['row'])} (user_id={row['user_id']})"
        )
    return joined.drop(columns=[f"rating_{tag}"])


def serve(
    events: pd.DataFrame, preds_a: pd.DataFrame, preds_b: pd.DataFrame, paths
) -> pd.DataFrame:
    """Events with both models' predictions: columns pred_a, rank_a, pred_b, rank_b."""
    events = events.assign(row=events.groupby("day").cumcount())  # row within its batch file
    served = _join_one(events, preds_a, Path(paths[0]), "a")
    served = _join_one(served, preds_b, Path(paths[1]), "b")
    return served.drop(columns="row")


def outcome_values(pred: np.ndarray, rank: np.ndarray, rating: np.ndarray) -> dict:
    """Every per-event outcome of one model's predictions: metric -> (events,) array."""
    error, rank = np.asarray(pred, float) - np.asarray(rating, float), np.asarray(rank, float)
    in_top = rank <= TOP_K
    return {
        "sq_err": error**2,
        "abs_err": np.abs(error),
        "hit@10": in_top.astype(float),
        "ndcg@10": np.where(in_top, 1.0 / np.log2(rank + 1.0), 0.0),
        "rr@10": np.where(in_top, 1.0 / rank, 0.0),
    }


def event_outcomes(served: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per-event outcomes `<metric>_a`, `<metric>_b` beside user_id and day."""
    out = served[["user_id", "day"]].copy()
    for tag in ("a", "b"):
        values = outcome_values(served[f"pred_{tag}"], served[f"rank_{tag}"], served["rating"])
        for metric in metrics:
            out[f"{metric}_{tag}"] = values[metric]
    return out


def seed_outcomes(events: pd.DataFrame, path: Path, metrics: list[str]) -> pd.DataFrame:
    """One more checkpoint's per-event outcomes (columns = metrics), row-aligned with `events`.

    For the across-seeds analysis: the same model trained with another seed, read and joined
    exactly as the main prediction files are (a missing or mismatched row is an error).
    """
    events = events.assign(row=events.groupby("day").cumcount())
    joined = _join_one(events, read_predictions(path), Path(path), "s")
    values = outcome_values(joined["pred_s"], joined["rank_s"], joined["rating"])
    return pd.DataFrame({metric: values[metric] for metric in metrics})


def per_user(outcomes: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per user (sorted by user_id): n_events and the mean of every outcome column."""
    columns = [f"{m}_{tag}" for m in metrics for tag in ("a", "b")]
    grouped = outcomes.groupby("user_id", sort=True)
    users = grouped[columns].mean()
    users.insert(0, "n_events", grouped.size().astype("int64"))
    return users.reset_index()


def user_days(outcomes: pd.DataFrame, last_day: int) -> np.ndarray:
    """(last_day,) cumulative distinct (user, day) pairs through each day: the information."""
    pairs = outcomes[["user_id", "day"]].drop_duplicates()
    per_day = np.bincount(pairs["day"].to_numpy(), minlength=last_day + 1)[1 : last_day + 1]
    return np.cumsum(per_day)


def assign_arm_b(user_ids: np.ndarray, salt: str, share_b: float) -> np.ndarray:
    """Deterministic salted-hash assignment: True where a user falls in arm B."""
    hashes = [hashlib.sha256(f"{salt}:{uid}".encode()).digest()[:8] for uid in user_ids]
    unit = np.array([int.from_bytes(h, "big") for h in hashes], dtype=float) / 2.0**64
    return unit < share_b


def train_users(split_dir: Path) -> np.ndarray:
    """Users with at least one training rating (warm); the others are cold."""
    path = Path(split_dir) / "train.parquet"
    return _read_parquet(path, ("user_id",), "training split (did the split stage run?)")[
        "user_id"
    ].unique()


def user_segments(users: pd.DataFrame, segments: list[str], warm: np.ndarray | None) -> dict:
    """segment name -> (labels of its two groups, (n_users,) bool: user in the first group).

    history: warm (has training ratings) vs cold; activity: heavy (events in the window at or
    above the median user's) vs light. history is skipped without the training users.
    """
    out = {}
    for name in segments:
        if name == "history" and warm is not None:
            out[name] = (("warm", "cold"), users["user_id"].isin(warm).to_numpy())
        elif name == "activity":
            n = users["n_events"].to_numpy()
            out[name] = (("heavy", "light"), n >= np.median(n))
    return out
