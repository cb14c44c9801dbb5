"""`recsys etl` through a real DVC repo: order, idempotency, the gate, SIGKILL recovery, locks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recsys.io import md5_file
from tests.conftest import dvc, git, use_pipeline_days
from tests.test_pipeline import recsys_cli, use_tiny_dataset

pytestmark = pytest.mark.slow

# Loaded at interpreter start-up through PYTHONPATH: the first parquet file the stage writes
# gets half its bytes, then the process SIGKILLs itself -- a crash in the middle of a write.
KILL_MID_WRITE = """
import os, signal
import pyarrow.parquet as pq

_write_table = pq.write_table

def write_half_then_die(table, where, *args, **kwargs):
    _write_table(table, where, *args, **kwargs)
    with open(where, "r+b") as fh:
        fh.truncate(os.path.getsize(where) // 2)
    os.kill(os.getpid(), signal.SIGKILL)

pq.write_table = write_half_then_die
"""


def use_days(repo: Path, n_days: int) -> None:
    """Shrink the days (fewer stages, faster tests) and commit."""
    use_pipeline_days(repo, n_days)
    git(repo, "commit", "-q", "-am", f"{n_days} days")


def lock_entries(repo: Path, *days: int) -> dict:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {f"batch@{d}": stages[f"batch@{d}"] for d in days}


def outputs(repo: Path, day: int) -> dict[str, str]:
    names = [f"batches/day_{day:02d}.parquet", f"batches/quarantine/day_{day:02d}.parquet"]
    return {n: md5_file(repo / n) for n in [*names, f"metrics/quality/day_{day:02d}.json"]}


def test_days_in_order_status_and_same_result_as_one_dvc_repro(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)  # 400 ratings: test split 40 rows
    use_days(dvc_repo, 4)  # 10 rows a day

    first = recsys_cli(dvc_repo, "etl", "--next")
    assert first.returncode == 0, first.stderr
    assert "day 1/4  rows 10  accepted 10  quarantined 0  PASSED" in first.stdout
    assert '"event": "batch_done"' not in first.stderr  # stage logs stay in DVC's output

    early = recsys_cli(dvc_repo, "etl", "--day", "3")
    assert early.returncode == 1
    assert early.stderr == "recsys etl: error: day 3 needs day 2 first: run `recsys etl --next`\n"

    two = recsys_cli(dvc_repo, "etl", "--simulate", "2")
    assert two.returncode == 0, two.stderr
    assert "day 2/4" in two.stdout and "day 3/4" in two.stdout
    status = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)["etl"]
    assert (status["days_done"], status["records_processed"], status["next_day"]) == (3, 30, 4)
    assert status["coverage_pct"] == 75.0 and status["last_quality"]["passed"] is True
    nightly = lock_entries(dvc_repo, 1, 2, 3)
    day3 = outputs(dvc_repo, 3)

    # the remaining days all at once: days 1-3 stay as they are, the others join them
    assert dvc(dvc_repo, "repro", "--glob", "batch@*").returncode == 0
    assert lock_entries(dvc_repo, 1, 2, 3) == nightly
    text = recsys_cli(dvc_repo, "status").stdout
    assert "days done 4/4, records processed 40 (0 quarantined), coverage 100.0 %" in text

    assert dvc(dvc_repo, "repro", "-s", "quality").returncode == 0  # the days in one chart
    plots = json.loads(dvc(dvc_repo, "plots", "show", "--json").stdout)["data"]["quality"]
    points = plots[0]["content"]["data"]["values"]
    assert sorted({int(p["day"]) for p in points}) == [1, 2, 3, 4]  # not days 5-20: not run
    assert {float(p["validity"]) for p in points} == {1.0}  # a CSV's values: text
    (shown,) = json.loads(dvc(dvc_repo, "metrics", "show", "--json").stdout).values()
    quality = shown["data"]["metrics/quality.json"]["data"]
    assert quality == {"days": 4, "days_failed": 0, "rows": 40, "quarantined": 0,
                       "worst": dict.fromkeys(("completeness", "validity", "uniqueness",
                                               "consistency"), 1.0)}  # fmt: skip

    # re-running a day, plainly or forced, changes nothing DVC hashes
    lock = (dvc_repo / "dvc.lock").read_bytes()
    again = recsys_cli(dvc_repo, "etl", "--day", "3")
    assert again.returncode == 0 and "day 3/4" in again.stdout
    assert dvc(dvc_repo, "repro", "-f", "-s", "batch@3").returncode == 0  # -s: not the split
    assert (dvc_repo / "dvc.lock").read_bytes() == lock
    assert outputs(dvc_repo, 3) == day3


def test_failing_day_stops_with_one_line_and_keeps_its_report(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["etl"]["rating_max"] = 2.0  # most ratings are now outside the scale
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    failed = recsys_cli(dvc_repo, "etl", "--next")
    assert failed.returncode == 1
    assert failed.stderr.startswith("recsys etl: error: day 1 failed quality: validity ")
    assert failed.stderr.count("\n") == 1
    assert "FAILED: validity" in failed.stdout  # the quality table is printed anyway
    report = json.loads((dvc_repo / "metrics/quality/day_01.json").read_text())
    assert report["passed"] is False
    assert report["quarantine_by_reason"]["rating_out_of_scale"] == report["quarantined"] > 0
    assert not (dvc_repo / "batches/day_01.parquet").exists()  # nothing downstream can use it
    status = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)["etl"]
    assert (status["days_done"], status["next_day"], status["last_day"]) == (0, 1, 1)
    assert status["last_quality"]["passed"] is False


def test_sigkill_mid_write_then_rerun_recovers_identical_outputs(dvc_repo: Path, tmp_path):
    use_tiny_dataset(dvc_repo)
    assert dvc(dvc_repo, "repro", "batch@2").returncode == 0
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "day 2")
    clean, lock = outputs(dvc_repo, 2), (dvc_repo / "dvc.lock").read_bytes()

    killer = tmp_path / "killer"
    killer.mkdir()
    (killer / "sitecustomize.py").write_text(KILL_MID_WRITE)
    env = {**os.environ, "PYTHONPATH": str(killer)}
    crashed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "-f", "-s", "batch@2"],
        cwd=dvc_repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert crashed.returncode != 0
    assert "failed to reproduce 'batch@2'" in crashed.stderr
    # SIGKILL: -9 when DVC's shell execs the stage, 128 + 9 when the shell forks and reports it
    assert re.search(r"exited with (-9|137)\b", crashed.stderr), crashed.stderr
    left = {p.name for p in (dvc_repo / "batches").rglob("*") if p.is_file()}
    assert "day_02.parquet" not in left  # no output that looks valid
    assert not (dvc_repo / "metrics/quality/day_02.json").exists()
    assert any(name.endswith(".tmp") for name in left)  # the half-written temp file

    status = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)["etl"]
    assert status["next_day"] == 1 and status["days_done"] == 0  # day 2 is not done

    # a plain repro restores the day from DVC's run cache; a forced one really runs the stage
    for args in (["batch@2"], ["-f", "-s", "batch@2"]):
        assert dvc(dvc_repo, "repro", *args).returncode == 0
        assert outputs(dvc_repo, 2) == clean
        assert (dvc_repo / "dvc.lock").read_bytes() == lock
    assert not [p for p in (dvc_repo / "batches").rglob("*.tmp")]  # the real run swept it up


def test_two_runs_at_once_wait_for_the_lock(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)
    cmd = [sys.executable, "-m", "recsys.cli", "etl", "--day", "1"]
    procs = [
        subprocess.Popen(cmd, cwd=dvc_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    assert all(b"day 1/2 " in out for _, out, _ in results)
    assert all(err.count(b'"event": "day_done"') == 1 for _, _, err in results)
    assert json.loads(dvc(dvc_repo, "status", "batch@1", "--json").stdout) == {}
    status = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)["etl"]
    assert status["days_done"] == 1
    assert json.loads((dvc_repo / "metrics/quality/day_01.json").read_text())["passed"] is True
