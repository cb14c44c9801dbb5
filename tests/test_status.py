"""`recsys status` rendering (per-day stages fold into one row with counts); the DVC runner."""

from __future__ import annotations

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
