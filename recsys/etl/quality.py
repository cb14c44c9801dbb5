"""Row-level data-quality rules, shared by `recsys validate` (raw CSV) and the daily batches.

Every rule is vectorised over whole columns and yields a reason per row ("" = valid). Columns
arrive as float64 with NaN for a missing value, so a raw CSV (parsed with to_numeric) and a
parquet split (nullable columns) go through the same code. A row gets the FIRST reason that
applies, in REASONS order, so each rejected row counts against exactly one metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.data.canonical import RATINGS_COLUMNS

# reason -> the quality metric it counts against, in priority order (first match wins)
REASONS: dict[str, str] = {
    "missing_field": "completeness",  # a required field is empty / null
    "not_a_number": "validity",  # text where a number belongs, or NaN written out
    "bad_id": "validity",  # user_id / item_id not a positive integer
    "rating_out_of_scale": "validity",  # outside [min, max] or not on the scale's step
    "bad_timestamp": "validity",  # negative or fractional epoch seconds
    "future_timestamp": "validity",  # after the moment of the check
    "outside_day_window": "validity",  # not inside the day's time window (daily batches only)
    "duplicate": "uniqueness",  # same (user_id, item_id, timestamp) as an earlier row
    "before_item_first_seen": "consistency",  # earlier than the item's first known rating
    "user_time_order": "consistency",  # earlier than a previous event of the same user
}
METRICS = ("completeness", "validity", "uniqueness", "consistency")
KEY = ["user_id", "item_id", "timestamp"]


@dataclass
class RowRules:
    """What a row is checked against: the rating scale, 'now' and optional history."""

    rating_min: float
    rating_max: float
    rating_step: float
    now: int  # epoch seconds; later timestamps are in the future
    window: tuple[int, int] | None = None  # inclusive [first, last] epoch seconds of the day
    item_first_seen: pd.Series | None = None  # item_id -> earliest earlier timestamp
    user_last_seen: pd.Series | None = None  # user_id -> latest earlier timestamp
    user_order: bool = True  # check per-user time order (a raw file may be unsorted)
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # reason -> (n,) bool from a parser


def _is_whole(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values == np.floor(values))


def _on_scale(rating: np.ndarray, rules: RowRules) -> np.ndarray:
    steps = (rating - rules.rating_min) / rules.rating_step
    in_range = (rating >= rules.rating_min) & (rating <= rules.rating_max)
    return in_range & np.isclose(steps, np.round(steps), atol=1e-9)


def _history_violations(frame: pd.DataFrame, rules: RowRules) -> dict[str, np.ndarray]:
    """Consistency checks: item first appearance and per-user time order."""
    ts = frame["timestamp"].to_numpy()
    out = {}
    if rules.item_first_seen is not None:
        first = frame["item_id"].map(rules.item_first_seen).to_numpy(dtype=float)
        out["before_item_first_seen"] = ts < first  # NaN (new item) compares False
    if not rules.user_order:
        return out
    earlier_max = frame.groupby("user_id", sort=False)["timestamp"].cummax().to_numpy()
    order = ts < earlier_max  # a previous row of this user in the batch is later
    if rules.user_last_seen is not None:
        order |= ts < frame["user_id"].map(rules.user_last_seen).to_numpy(dtype=float)
    out["user_time_order"] = order
    return out


def rule_violations(frame: pd.DataFrame, rules: RowRules) -> dict[str, np.ndarray]:
    """One boolean mask per reason (True = the row breaks that rule)."""
    cols = {c: frame[c].to_numpy(dtype=float) for c in RATINGS_COLUMNS}
    ts, rating = cols["timestamp"], cols["rating"]
    ids_ok = _is_whole(cols["user_id"]) & _is_whole(cols["item_id"])
    ids_ok &= (cols["user_id"] > 0) & (cols["item_id"] > 0)
    missing = frame[RATINGS_COLUMNS].isna().any(axis=1).to_numpy()
    masks = {
        # a parser that knows empty from unparsable fields passes its own mask in flags
        "missing_field": rules.flags.get("missing_field", missing),
        "bad_id": ~ids_ok,
        "rating_out_of_scale": ~_on_scale(rating, rules),
        "bad_timestamp": ~_is_whole(ts) | (ts < 0),
        "future_timestamp": ts > rules.now,
        "duplicate": frame.duplicated(subset=KEY, keep="first").to_numpy(),
    }
    if rules.window is not None:
        masks["outside_day_window"] = (ts < rules.window[0]) | (ts > rules.window[1])
    masks.update(_history_violations(frame, rules))
    for reason, mask in rules.flags.items():  # e.g. the CSV parser's not-a-number
        masks[reason] = masks.get(reason, False) | mask
    return masks


def row_reasons(frame: pd.DataFrame, rules: RowRules) -> np.ndarray:
    """The first rule each row breaks, in REASONS order; "" for a valid row. (n,) object."""
    masks = rule_violations(frame, rules)
    reasons = np.full(len(frame), "", dtype=object)
    for reason in reversed(REASONS):  # later (lower-priority) reasons are overwritten
        if reason in masks:
            reasons[masks[reason]] = reason
    return reasons


def quality_scores(reasons: np.ndarray) -> dict[str, float]:
    """Share of rows NOT rejected for each metric's reasons (1.0 for an empty batch)."""
    n_rows = len(reasons)
    counts = reason_counts(reasons)
    scores = {}
    for metric in METRICS:
        bad = sum(n for reason, n in counts.items() if REASONS[reason] == metric)
        scores[metric] = 1.0 - bad / n_rows if n_rows else 1.0
    return scores


def reason_counts(reasons: np.ndarray) -> dict[str, int]:
    """Rows per reason, every reason listed (zeros included) so files have stable keys."""
    values, counts = np.unique(reasons[reasons != ""].astype(str), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return {reason: int(found.get(reason, 0)) for reason in REASONS}
