"""`split` stage: global temporal split into train / val / test, k-core on train, id maps.

Rows are ordered by (timestamp, user, item); the oldest rows are train, the next `val_frac`
val, the newest `test_frac` test. Cut-offs are positions in that order, so no val/test event
precedes a train event and the fractions are exact. k-core filtering looks at train rows only,
so nothing after the train cut-off informs what is kept before it; val and test are kept whole
(their cold users and items are what the evaluation reports apart).

Every row is accounted for: train and val rows go through the same row rules as the daily
batches apply to test rows (recsys.etl.quality, the rating scale of params.yaml's `etl`
section); a rejected row goes to `quarantine.parquet` with its part, its position in the
sorted ratings and its reason. Test rows are passed on whole: the `batch@N` stages gate them.
Per part, input rows = kept + quarantined + dropped by k-core (meta.json, `recsys status`).

    python -m recsys.etl.split --ratings data/ml-100k/ratings.csv --out artifacts/split
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import SplitParams, load_params
from recsys.data.canonical import read_ratings, sort_ratings
from recsys.errors import RecsysError, run_reporting_errors
from recsys.etl.quality import RowRules
from recsys.etl.validate import default_rules, screen_ratings
from recsys.io import write_json, write_parquet

GATED_PARTS = ("train", "val")  # test rows are gated day by day (recsys.etl.day)


def split_sizes(n_rows: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """Row counts (train, val, test): test and val rounded, train takes the rest."""
    n_test = round(n_rows * test_frac)
    n_val = round(n_rows * val_frac)
    n_train = n_rows - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise RecsysError(
            f"{n_rows} ratings are too few for val_frac={val_frac}, test_frac={test_frac}: "
            "every part needs at least one row"
        )
    return n_train, n_val, n_test


def k_core(train: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Drop users and items with too few train ratings, repeating until nothing changes."""
    while True:
        user_counts = train["user_id"].map(train["user_id"].value_counts())
        item_counts = train["item_id"].map(train["item_id"].value_counts())
        keep = (user_counts >= min_user) & (item_counts >= min_item)
        if keep.all():
            return train
        train = train[keep]


def id_map(ids: pd.Series) -> pd.DataFrame:
    """Dense indices 1..n for the sorted distinct ids (0 is left for padding / unknown)."""
    distinct = np.sort(ids.unique())
    return pd.DataFrame({"raw_id": distinct, "idx": np.arange(1, len(distinct) + 1)})


def screen_part(name: str, rows: pd.DataFrame, offset: int, rules: RowRules):
    """(kept rows, quarantined rows with part, 0-based position in the sorted ratings, reason)."""
    screened = screen_ratings(rows, rules)
    quarantine = screened.quarantine.rename(columns={"row": "position"})
    quarantine["position"] += offset - 1  # screen_ratings counts rows from 1
    quarantine.insert(0, "part", name)
    if screened.valid.empty:
        counts = quarantine["reason"].value_counts()
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in counts.items())
        raise RecsysError(
            f"every {name} row broke a row rule ({reasons}); check the ratings file with "
            "`recsys validate FILE`"
        )
    return screened.valid, quarantine


def temporal_split(
    ratings: pd.DataFrame, params: SplitParams, rules: RowRules | None = None
) -> dict[str, pd.DataFrame]:
    """Split canonical ratings into train/val/test by time, gate train and val by the row
    rules (`rules`: default_rules(), the scale of ./params.yaml), k-core train, map its ids."""
    rules = rules or default_rules()
    ratings = sort_ratings(ratings)
    n_train, n_val, _ = split_sizes(len(ratings), params.val_frac, params.test_frac)
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    kept, quarantined = {}, []
    for name, (start, stop) in cuts.items():
        kept[name], rejected = screen_part(name, ratings.iloc[start:stop], start, rules)
        quarantined.append(rejected)
    train = k_core(kept["train"], params.min_user_ratings, params.min_item_ratings)
    if train.empty:
        raise RecsysError(
            f"k-core (min_user_ratings={params.min_user_ratings}, min_item_ratings="
            f"{params.min_item_ratings}) removed every training row; lower them in params.yaml"
        )
    train_all = kept["train"]
    return {
        "train": train.reset_index(drop=True),
        "val": kept["val"],
        "test": ratings.iloc[n_train + n_val :].reset_index(drop=True),
        "users": id_map(train["user_id"]),
        "items": id_map(train["item_id"]),
        # k-core drops are kept, not lost: the rows a filter removed stay inspectable
        "dropped": train_all.loc[train_all.index.difference(train.index)].reset_index(drop=True),
        "quarantine": pd.concat(quarantined, ignore_index=True),
    }


def split_meta(parts: dict[str, pd.DataFrame], n_input: dict[str, int]) -> dict:
    """Counts and cut-off times of a split, for meta.json and `recsys status`; `n_input`:
    rows per part before any gate (split_sizes), to which the kept, quarantined and k-core
    dropped rows must add up."""
    train_users = set(parts["train"]["user_id"])
    meta: dict = {"n_users_train": len(parts["users"]), "n_items_train": len(parts["items"])}
    meta["n_dropped_by_k_core"] = len(parts["dropped"])
    reasons = parts["quarantine"].groupby(["part", "reason"]).size()
    for name in ("train", "val", "test"):
        part = parts[name]
        cold = ~part["user_id"].isin(train_users)
        n_quarantined = int((parts["quarantine"]["part"] == name).sum())
        n_dropped = len(parts["dropped"]) if name == "train" else 0
        meta[name] = {
            "n_input": n_input[name],  # = n_ratings (kept) + n_quarantined + n_dropped_by_k_core
            "n_quarantined": n_quarantined,
            "n_dropped_by_k_core": n_dropped,
            "quarantine_by_reason": {r: int(n) for (p, r), n in reasons.items() if p == name},
            "gated": name in GATED_PARTS,
            "n_ratings": len(part),
            "n_users": int(part["user_id"].nunique()),
            "n_cold_user_events": int(cold.sum()),
            "first_timestamp": int(part["timestamp"].min()),
            "last_timestamp": int(part["timestamp"].max()),
        }
    return meta


def run_split(
    ratings_path: Path, out_dir: Path, params: SplitParams, rules: RowRules | None = None
) -> dict:
    """Read canonical ratings, split them, write parquet parts (quarantine included) and
    meta.json; return meta."""
    ratings = read_ratings(ratings_path)
    parts = temporal_split(ratings, params, rules)
    sizes = split_sizes(len(ratings), params.val_frac, params.test_frac)
    meta = split_meta(parts, dict(zip(("train", "val", "test"), sizes, strict=True)))
    for name, frame in parts.items():
        write_parquet(out_dir / f"{name}.parquet", frame)
    write_json(out_dir / "meta.json", meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the split, print one summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.etl.split", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ratings", type=Path, required=True, help="canonical ratings.csv")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        split_params = load_params(args.params).split
        meta = run_split(args.ratings, args.out, split_params, default_rules(args.params))
        counts = ", ".join(f"{k} {meta[k]['n_ratings']:,}" for k in ("train", "val", "test"))
        bad = sum(meta[k]["n_quarantined"] for k in GATED_PARTS)
        print(f"split: {counts} ratings, {bad:,} quarantined -> {args.out}")
        return 0

    return run_reporting_errors("split", body)


if __name__ == "__main__":
    sys.exit(main())
