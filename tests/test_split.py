"""The temporal split: exact fractions, no leakage across cut-offs, nothing lost or doubled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import SplitParams
from recsys.data.canonical import sort_ratings, write_canonical
from recsys.errors import RecsysError
from recsys.etl.split import k_core, run_split, split_sizes, temporal_split
from tests.conftest import PROJECT_ROOT, tiny_ratings

KEY = ["user_id", "item_id", "timestamp"]


@pytest.mark.parametrize("seed", range(25))
def test_parts_partition_the_ratings_in_time_order(seed: int):
    rng = np.random.default_rng(seed)
    ratings = tiny_ratings(
        n_users=int(rng.integers(5, 40)), per_user=int(rng.integers(3, 15)), seed=seed
    )
    params = SplitParams(
        val_frac=float(rng.uniform(0.02, 0.4)), test_frac=float(rng.uniform(0.02, 0.4))
    )
    parts = temporal_split(ratings, params)
    train, val, test = parts["train"], parts["val"], parts["test"]

    assert len(test) == round(len(ratings) * params.test_frac)
    assert len(val) == round(len(ratings) * params.val_frac)
    together = pd.concat([train, val, test])
    assert len(together) == len(ratings)  # nothing lost ...
    assert not together.duplicated(KEY).any()  # ... nothing twice
    pd.testing.assert_frame_equal(
        together.sort_values(KEY).reset_index(drop=True),
        ratings.sort_values(KEY).reset_index(drop=True)[together.columns],
    )
    assert train["timestamp"].max() <= val["timestamp"].min()  # no val event precedes train
    assert val["timestamp"].max() <= test["timestamp"].min()


def test_hand_worked_split_and_id_maps():
    ratings = pd.DataFrame(
        {
            "user_id": [10, 20, 10, 30, 20, 10, 40, 20, 30, 50],
            "item_id": [5, 5, 7, 9, 7, 9, 5, 9, 5, 7],
            "rating": [4.0, 3, 5, 2, 4, 1, 5, 3, 4, 2],
            "timestamp": [100, 100, 101, 102, 103, 104, 105, 106, 107, 108],
        }
    )
    parts = temporal_split(ratings, SplitParams(val_frac=0.2, test_frac=0.2))
    assert parts["train"]["timestamp"].tolist() == [100, 100, 101, 102, 103, 104]
    assert parts["val"]["user_id"].tolist() == [40, 20]
    assert parts["test"]["user_id"].tolist() == [30, 50]
    assert parts["users"].to_dict("list") == {"raw_id": [10, 20, 30], "idx": [1, 2, 3]}
    assert parts["items"].to_dict("list") == {"raw_id": [5, 7, 9], "idx": [1, 2, 3]}


def test_k_core_iterates_to_a_fixed_point():
    # user 3 has one rating; removing it leaves item 30 with one rating, which then goes too,
    # which leaves user 2 with a single rating: only users 1 and 4 on items 10 and 20 remain.
    train = pd.DataFrame(
        {"user_id": [1, 1, 2, 2, 3, 4, 4], "item_id": [10, 20, 10, 30, 30, 10, 20]}
    )
    kept = k_core(train, min_user=2, min_item=2)
    assert sorted(zip(kept["user_id"], kept["item_id"], strict=True)) == [
        (1, 10),
        (1, 20),
        (4, 10),
        (4, 20),
    ]


def test_k_core_drops_are_kept_and_val_test_stay_whole():
    ratings = tiny_ratings(n_users=20, n_items=15, per_user=10, seed=3)
    parts = temporal_split(ratings, SplitParams(min_user_ratings=7, min_item_ratings=6))
    assert len(parts["dropped"]) > 0
    assert len(parts["train"]) + len(parts["dropped"]) + len(parts["val"]) + len(
        parts["test"]
    ) == len(ratings)
    assert parts["train"]["user_id"].value_counts().min() >= 7
    assert parts["train"]["item_id"].value_counts().min() >= 6
    assert len(parts["test"]) == round(len(ratings) * 0.1)


def test_k_core_that_empties_train_is_a_clear_error():
    with pytest.raises(RecsysError, match="removed every training row"):
        temporal_split(tiny_ratings(), SplitParams(min_user_ratings=500))


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(RecsysError, match="too few"):
        split_sizes(5, val_frac=0.05, test_frac=0.05)


def test_stage_writes_parts_and_meta(tmp_path: Path):
    write_canonical(
        tiny_ratings(), pd.DataFrame(columns=["item_id", "title", "genres"]), tmp_path / "data"
    )
    meta = run_split(tmp_path / "data" / "ratings.csv", tmp_path / "out", SplitParams())
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "dropped.parquet",
        "items.parquet",
        "meta.json",
        "quarantine.parquet",
        "test.parquet",
        "train.parquet",
        "users.parquet",
        "val.parquet",
    ]
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert meta["test"]["n_ratings"] == len(test)
    train_users = set(pd.read_parquet(tmp_path / "out" / "train.parquet")["user_id"])
    assert meta["test"]["n_cold_user_events"] == int((~test["user_id"].isin(train_users)).sum())


def with_bad_rows(ratings: pd.DataFrame) -> pd.DataFrame:
    """`ratings` plus 6 bad rows: rating 9 and user_id 0 at the oldest second (train), in the
    middle of val's seconds, and at the newest second (test)."""
    stamps = np.sort(ratings["timestamp"].to_numpy())
    val_second = stamps[int(len(stamps) * 0.85)]  # val holds positions 80 %..90 %
    bad = [(user, item, rating, ts)
           for ts in (stamps[0], val_second, stamps[-1])
           for user, item, rating in ((3, 7, 9.0), (0, 7, 4.0))]  # fmt: skip
    injected = pd.DataFrame(bad, columns=["user_id", "item_id", "rating", "timestamp"])
    return pd.concat([ratings, injected], ignore_index=True)


def test_every_row_is_accounted_for_per_part(tmp_path: Path):
    ratings = with_bad_rows(tiny_ratings(n_users=20, n_items=15, per_user=10, seed=3))
    write_canonical(ratings, pd.DataFrame(columns=["item_id", "title", "genres"]), tmp_path)
    params = SplitParams(min_user_ratings=7, min_item_ratings=6)
    meta = run_split(tmp_path / "ratings.csv", tmp_path / "out", params)
    # 206 rows: test round(20.6) = 21, val 21, train 164 (split_sizes)
    assert [meta[k]["n_input"] for k in ("train", "val", "test")] == [164, 21, 21]
    for name in ("train", "val", "test"):
        part = meta[name]
        assert part["n_input"] == (
            part["n_ratings"] + part["n_quarantined"] + part["n_dropped_by_k_core"]
        ), name
    read = {n: pd.read_parquet(tmp_path / "out" / f"{n}.parquet")
            for n in ("train", "val", "test", "quarantine", "dropped")}  # fmt: skip
    assert meta["train"]["quarantine_by_reason"] == {"bad_id": 1, "rating_out_of_scale": 1}
    assert meta["val"]["quarantine_by_reason"] == {"bad_id": 1, "rating_out_of_scale": 1}
    assert meta["test"]["n_quarantined"] == 0  # test rows go whole to the day stages' gate
    assert meta["train"]["n_dropped_by_k_core"] == len(read["dropped"]) > 0
    for name in ("train", "val", "test"):
        assert len(read[name]) == meta[name]["n_ratings"]
    for name in ("train", "val"):
        assert not ((read[name]["rating"] == 9) | (read[name]["user_id"] == 0)).any()
    test_bad = read["test"][(read["test"]["rating"] == 9) | (read["test"]["user_id"] == 0)]
    assert len(test_bad) == 2
    quarantine = read["quarantine"]
    assert quarantine[["part", "reason", "user_id", "rating"]].values.tolist() == [
        ["train", "bad_id", 0, 4.0],  # same second: user 0 sorts before user 3
        ["train", "rating_out_of_scale", 3, 9.0],
        ["val", "bad_id", 0, 4.0],
        ["val", "rating_out_of_scale", 3, 9.0],
    ]
    assert quarantine["position"].tolist()[:2] == [0, 1]  # the oldest second, sorted first
    # every input row is in exactly one of the outputs
    together = pd.concat([read[n] for n in ("train", "val", "test", "dropped", "quarantine")])
    assert len(together) == len(ratings) == 206
    assert not together.duplicated(KEY).any()


def test_a_part_with_no_valid_row_is_a_clear_error():
    ratings = sort_ratings(tiny_ratings())  # 360 rows: val holds positions 288..323
    ratings.loc[288:323, "rating"] = 9.0
    with pytest.raises(RecsysError, match=r"^every val row broke a row rule "
                       r"\(rating_out_of_scale 36\); check the ratings file"):  # fmt: skip
        temporal_split(ratings, SplitParams())


def test_stage_cli_missing_input_is_one_line(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.etl.split",
            "--ratings",
            str(tmp_path / "nope.csv"),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(PROJECT_ROOT / "params.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"split: error: {tmp_path / 'nope.csv'}: not found; "
        "run `recsys fetch` (or `recsys synth`) first"
    )
    assert not (tmp_path / "out").exists()
