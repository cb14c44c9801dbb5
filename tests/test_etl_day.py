"""Daily batches: exact partition of the test split, quality rules, quarantine, the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import EtlParams, SplitParams
from recsys.data.canonical import write_canonical
from recsys.etl.day import day_bounds, day_window, main, run_batch
from recsys.etl.quality import RowRules, quality_scores, row_reasons
from recsys.etl.split import run_split
from recsys.io import md5_file, write_parquet
from tests.conftest import tiny_ratings

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def make_split(tmp_path: Path, test_frac: float = 0.1, **sizes) -> Path:
    """A real split folder (the split stage's own code) from tiny ratings."""
    movies = pd.DataFrame({"item_id": range(1, 41), "title": "Film (1990)", "genres": "Drama"})
    write_canonical(tiny_ratings(**sizes), movies, tmp_path / "data")
    out = tmp_path / "split"
    run_split(tmp_path / "data" / "ratings.csv", out, SplitParams(test_frac=test_frac))
    return out


def run_day(tmp_path: Path, split: Path, day: int, params: EtlParams) -> dict:
    out = tmp_path / "out"
    return run_batch(
        day,
        split,
        out / f"day_{day:02d}.parquet",
        out / "quarantine" / f"day_{day:02d}.parquet",
        out / "quality" / f"day_{day:02d}.json",
        params,
    )


@pytest.mark.parametrize("n_days", [1, 3, 7, 20])
def test_day_bounds_are_equal_slices_first_days_one_longer(n_days: int):
    rng = np.random.default_rng(n_days)
    for n_rows in [n_days, *rng.integers(n_days, 5000, 50)]:
        bounds = day_bounds(int(n_rows), n_days)
        sizes = np.diff(bounds)
        assert bounds[0] == 0 and bounds[-1] == n_rows
        assert sizes.max() - sizes.min() <= 1 and sizes.min() == n_rows // n_days
        assert (sizes[: n_rows % n_days] == n_rows // n_days + 1).all()  # first n % k get +1


def test_divisible_test_split_gives_exactly_five_percent_each():
    assert np.diff(day_bounds(10_000, 20)).tolist() == [500] * 20


def test_window_is_closed_and_shares_a_straddling_second():
    ts = np.array([10, 10, 20, 20, 20, 30], dtype=float)
    bounds = day_bounds(6, 3)  # [0, 2, 4, 6]
    assert [day_window(ts, bounds, d) for d in (1, 2, 3)] == [(10, 20), (20, 20), (20, 30)]


@pytest.mark.parametrize("seed", range(4))
def test_the_days_partition_the_test_split_exactly(tmp_path: Path, seed: int):
    """Property: for random sizes and fractions, days + quarantines == test, row for row."""
    rng = np.random.default_rng(seed)
    n_users, per_user = int(rng.integers(20, 60)), int(rng.integers(8, 20))
    test_frac, n_days = float(rng.uniform(0.05, 0.4)), int(rng.integers(1, 21))
    split = make_split(tmp_path, test_frac, n_users=n_users, per_user=per_user, seed=seed)
    test = pd.read_parquet(split / "test.parquet")
    params = EtlParams(n_days=n_days)
    parts = []
    for day in range(1, n_days + 1):
        report = run_day(tmp_path, split, day, params)
        accepted = pd.read_parquet(tmp_path / f"out/day_{day:02d}.parquet")
        rejected = pd.read_parquet(tmp_path / f"out/quarantine/day_{day:02d}.parquet")
        assert report["rows"] == len(accepted) + len(rejected)
        parts += [accepted[COLUMNS], rejected[COLUMNS]]
    together = pd.concat(parts).sort_values(COLUMNS).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, test.sort_values(COLUMNS).reset_index(drop=True))


def test_rerun_gives_identical_bytes(tmp_path: Path):
    split = make_split(tmp_path)
    run_day(tmp_path, split, 2, EtlParams())
    files = sorted((tmp_path / "out").rglob("day_02.*"))
    first = {f: md5_file(f) for f in files if not f.name.endswith(".timing.json")}
    run_day(tmp_path, split, 2, EtlParams())
    assert {f: md5_file(f) for f in first} == first


def corrupt_test_split(split: Path) -> pd.DataFrame:
    """Put known faults into test.parquet's first rows; return the faulty frame."""
    test = pd.read_parquet(split / "test.parquet")
    bad = test.copy()  # same schema: rating is float64 already
    bad.loc[1, "rating"] = 7.0  # outside the scale
    bad.loc[2, "rating"] = np.nan  # missing
    bad.loc[4] = bad.loc[3]  # duplicate of row 3
    bad.loc[6, "user_id"] = -1  # not a valid id (day 2)
    write_parquet(split / "test.parquet", bad)
    return bad


def test_bad_rows_are_quarantined_with_reasons_and_scores_by_hand(tmp_path: Path):
    split = make_split(tmp_path, n_users=40, per_user=25)  # 1000 ratings, test 100, days of 5
    corrupt_test_split(split)
    params = EtlParams(min_quality=0.0)  # let the day pass to see the accepted rows too
    report = run_day(tmp_path, split, 1, params)
    rejected = pd.read_parquet(tmp_path / "out/quarantine/day_01.parquet")
    assert rejected[["position", "reason"]].to_dict("records") == [
        {"position": 1, "reason": "rating_out_of_scale"},
        {"position": 2, "reason": "missing_field"},
        {"position": 4, "reason": "duplicate"},
    ]
    assert (report["rows"], report["accepted"], report["quarantined"]) == (5, 2, 3)
    assert report["completeness"] == pytest.approx(4 / 5)
    assert report["validity"] == pytest.approx(4 / 5)
    assert report["uniqueness"] == pytest.approx(4 / 5)
    accepted = pd.read_parquet(tmp_path / "out/day_01.parquet")
    assert str(accepted["user_id"].dtype) == "int64" and len(accepted) == 2
    assert set(rejected.columns) >= {*COLUMNS, "reason", "position"}
    run_day(tmp_path, split, 2, params)
    day2 = pd.read_parquet(tmp_path / "out/quarantine/day_02.parquet")
    assert day2[["position", "user_id", "reason"]].to_dict("records") == [
        {"position": 6, "user_id": -1, "reason": "bad_id"}
    ]


def test_day_below_threshold_fails_writes_report_and_no_day_file(tmp_path: Path, capsys):
    split = make_split(tmp_path, n_users=40, per_user=25)
    corrupt_test_split(split)
    out = tmp_path / "out"
    (out / "day_01.parquet").parent.mkdir(parents=True)
    (out / "day_01.parquet").write_bytes(b"stale")  # an older run's file must not survive
    code = main(
        [
            "--day=1",
            f"--split={split}",
            f"--out={out}/day_01.parquet",
            f"--quarantine={out}/q/day_01.parquet",
            f"--quality={out}/day_01.json",
        ]
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[-1] == (
        "batch: error: day 1 failed quality: completeness 0.8000 < 0.95; "
        "validity 0.8000 < 0.95; uniqueness 0.8000 < 0.95"
    )
    report = json.loads((out / "day_01.json").read_text())
    assert report["passed"] is False and report["quarantined"] == 3
    assert not (out / "day_01.parquet").exists()
    assert len(pd.read_parquet(out / "q/day_01.parquet")) == 3
    timing = json.loads((out / "day_01.timing.json").read_text())
    assert timing["rows"] == 5 and timing["duration_s"] > 0


def test_changed_schema_fails_consistency(tmp_path: Path):
    split = make_split(tmp_path)
    test = pd.read_parquet(split / "test.parquet")
    write_parquet(split / "test.parquet", test.astype({"timestamp": "float64"}))
    with pytest.raises(Exception, match="schema changed: timestamp is double, reference has int64"):
        run_day(tmp_path, split, 1, EtlParams())


def rules(**kwargs) -> RowRules:
    return RowRules(rating_min=1, rating_max=5, rating_step=1, now=2_000, **kwargs)


def test_row_rules_by_hand():
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 3, np.nan, 4],
            "item_id": [7, 7, 8, 9, 9, 8, 1, 2],
            "rating": [5, 5, 2, 4.5, 3, 1, 3, 3],
            "timestamp": [100, 100, 150, 160, 3000, 90, 100, 120],
        }
    ).astype("float64")
    reasons = row_reasons(
        frame,
        rules(
            window=(100, 200),
            item_first_seen=pd.Series({8: 140.0}),  # item 8 first rated at t=140
            user_last_seen=pd.Series({4: 130.0}),  # user 4 rated at t=130 on an earlier day
        ),
    )
    assert reasons.tolist() == [
        "",
        "duplicate",  # same user, item, timestamp as row 0
        "",
        "rating_out_of_scale",  # 4.5 is not on a whole-star scale
        "future_timestamp",  # 3000 > now
        "outside_day_window",  # 90 < 100 (checked before item/user history)
        "missing_field",
        "user_time_order",  # 120 < user 4's earlier 130
    ]
    scores = quality_scores(reasons)
    assert scores == pytest.approx(
        {"completeness": 7 / 8, "validity": 5 / 8, "uniqueness": 7 / 8, "consistency": 7 / 8}
    )


def test_item_before_its_first_appearance_and_in_batch_order():
    frame = pd.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [3, 4, 3], "rating": [1, 2, 3], "timestamp": [50, 40, 60]}
    ).astype("float64")
    reasons = row_reasons(frame, rules(item_first_seen=pd.Series({3: 55.0})))
    # row 0: item 3 rated at 50 before its first appearance at 55; row 1: user 1 goes back in time
    assert reasons.tolist() == ["before_item_first_seen", "user_time_order", ""]


def test_cutoff_rule(tmp_path: Path):
    split = make_split(tmp_path)
    test = pd.read_parquet(split / "test.parquet")
    cutoff = json.loads((split / "meta.json").read_text())["val"]["last_timestamp"]
    test.loc[1, "timestamp"] = cutoff - 60  # earlier than the last train/val event
    write_parquet(split / "test.parquet", test)
    out = tmp_path / "out"
    run_batch(
        1,
        split,
        out / "d.parquet",
        out / "q.parquet",
        out / "q.json",
        EtlParams(min_quality=0.0),
    )
    reasons = pd.read_parquet(out / "q.parquet")[["position", "reason"]]
    assert reasons.to_dict("records") == [{"position": 1, "reason": "outside_day_window"}]
