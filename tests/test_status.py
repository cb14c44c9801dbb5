"""`recsys status` rendering (per-day stages fold into one row with counts); the DVC runner."""

from __future__ import annotations

import pandas as pd
import pytest
from dvc import __version__

from recsys.errors import RecsysError
from recsys.pipeline import StageState, run_dvc
from recsys.status import Status, render_status


def stage(name: str, built: bool, changes: list[str] | None = None) -> StageState:
    return StageState(name=name, outs=[], built=built, stale=bool(changes), changes=changes or [])


def test_day_stages_fold_into_one_row_naming_the_first_stale_one():
    stages = [
        stage("split", True),
        stage("train@ncf", True),
        *(stage(f"batch@{day}", day < 3) for day in (1, 2)),
        stage("batch@3", False, ["changed outs: batches/day_03.parquet deleted"]),
        stage("batch@4", False, ["changed outs: batches/day_04.parquet deleted"]),
    ]
    status = Status(dataset="ml-100k", ratings_file="data/ml-100k/ratings.csv", n_ratings=100_000,
                    split=None, stages=stages, next_step="dvc repro")  # fmt: skip
    table = render_status(status).splitlines()
    assert table[0] == "dataset   ml-100k  (data/ml-100k/ratings.csv: 100,000 ratings)"
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in table[2:6]}
    assert rows["split"] == ["1/1", "0"]
    assert rows["train@ncf"] == ["1/1", "0"]
    assert rows["batch@1.."] == [
        "2/4",
        "2",
        "batch@3: changed outs: batches/day_03.parquet deleted",
    ]
    assert table[-1] == "next      dvc repro"


def test_run_dvc_echoes_lines_as_they_come_and_fails_with_dvcs_reason(tmp_path):
    seen: list[str] = []
    out = run_dvc("--version", echo=seen.append)
    assert seen == [__version__] and out == f"{__version__}\n"
    with pytest.raises(RecsysError, match=r"^`dvc status` failed: .*not inside of a DVC repo"):
        run_dvc("status", cwd=tmp_path, echo=seen.append)


def test_split_rows_are_accounted_per_part(tmp_path):
    from recsys.config import SplitParams
    from recsys.data.canonical import write_canonical
    from recsys.etl.split import run_split
    from tests.conftest import tiny_ratings
    from tests.test_split import with_bad_rows

    movies = pd.DataFrame(columns=["item_id", "title", "genres"])
    write_canonical(with_bad_rows(tiny_ratings(n_users=20, n_items=15, per_user=10, seed=3)),
                    movies, tmp_path)  # fmt: skip
    meta = run_split(tmp_path / "ratings.csv", tmp_path / "out",
                     SplitParams(min_user_ratings=7, min_item_ratings=6))  # fmt: skip
    status = Status(dataset="ml-100k", ratings_file="r.csv", n_ratings=206, split=meta,
                    stages=[], next_step="dvc repro")  # fmt: skip
    table = render_status(status).splitlines()
    dropped = meta["train"]["n_dropped_by_k_core"]
    assert table[1] == f"split     train {162 - dropped}, val 19, test 21"
    # 206 rows = 164 train + 21 val + 21 test; 2 bad rows quarantined in each of train and val
    assert table[2].split() == ["rows", "part", "input", "=", "kept", "+", "quarantined", "+",
                                "k-core", "dropped"]  # fmt: skip
    reasons = "(bad_id 1, rating_out_of_scale 1)"
    assert table[3].split() == ["train", "164", "=", str(162 - dropped), "+", "2", "+",
                                str(dropped), *reasons.split()]  # fmt: skip
    assert table[4].split() == ["val", "21", "=", "19", "+", "2", "+", "0", *reasons.split()]
    assert table[5].split()[:7] == ["test", "21", "=", "21", "+", "0", "+"]
