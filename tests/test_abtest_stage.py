"""The abtest@N stage and the report end to end: real files, real subprocesses, real DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys.abtest.fake import fake_experiment, write_experiment
from recsys.abtest.outcomes import assign_arm_b
from recsys.config import load_params
from recsys.errors import RecsysError
from tests.conftest import PROJECT_ROOT, dvc, git

PRED_A, PRED_B = "artifacts/predictions/ncf.parquet", "artifacts/predictions/ss4rec.parquet"


def python_m(root: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` in `root`, importing this checkout's recsys."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)


def write_inputs(root: Path, n_events: int = 3_000, n_users: int = 60):
    experiment = fake_experiment(n_events=n_events, n_users=n_users, seed=0)
    write_experiment(experiment, root / "batches", root / PRED_A, root / PRED_B)
    return experiment


def run_stage(root: Path, day: int) -> subprocess.CompletedProcess:
    args = [
        *("--day", str(day), "--batches", "batches", "--predictions-a", PRED_A),
        *("--predictions-b", PRED_B, "--out-metrics", f"metrics/abtest/day_{day:02d}.json"),
        *("--out-users", f"artifacts/abtest/day_{day:02d}.parquet"),
    ]
    return python_m(root, "recsys.abtest.stage", *args)


def run_in_process(root: Path, day: int) -> dict:
    """The same stage function the CLI calls, without the interpreter start-up."""
    from recsys.abtest.stage import run_abtest

    return run_abtest(
        day=day,
        batches_dir=root / "batches",
        predictions_a=root / PRED_A,
        predictions_b=root / PRED_B,
        out_metrics=root / f"metrics/abtest/day_{day:02d}.json",
        out_users=root / f"artifacts/abtest/day_{day:02d}.parquet",
        params=load_params(root / "params.yaml").abtest,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    return tmp_path


def test_stage_days_1_to_3_and_report_recompute_from_the_two_files(project: Path):
    experiment = write_inputs(project)
    for day in (1, 2, 3):
        proc = run_stage(project, day)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"Day {day} (days 1-{day}, ")
    doc = json.loads((project / "metrics/abtest/day_03.json").read_text())
    params = load_params(project / "params.yaml").abtest

    # recompute day 3's paired NDCG@10 by hand from the batch and the two prediction files
    batch = experiment.batches[2]
    keys = ["user_id", "item_id", "timestamp"]
    ranks = {
        tag: batch.merge(p, on=keys)["rank"].to_numpy()
        for tag, p in (("a", experiment.predictions_a), ("b", experiment.predictions_b))
    }
    ndcg = {t: np.where(r <= 10, 1 / np.log2(r + 1), 0.0) for t, r in ranks.items()}
    frame = pd.DataFrame({"user": batch["user_id"], "a": ndcg["a"], "b": ndcg["b"]})
    per_user = frame.groupby("user")[["a", "b"]].mean()
    day = doc["windows"]["day"]
    assert day["n_users"] == len(per_user) and day["n_events"] == len(batch)
    assert day["paired"]["ndcg@10"]["estimate"] == pytest.approx(
        (per_user["b"] - per_user["a"]).mean()
    )

    users = pd.read_parquet(project / "artifacts/abtest/day_03.parquet")
    assert users["user_id"].tolist() == sorted(batch["user_id"].unique())
    arm_b = assign_arm_b(users["user_id"].to_numpy(), params.salt, params.share_b)
    assert users["arm"].tolist() == np.where(arm_b, "B", "A").tolist()
    assert users["ndcg@10_b"].to_numpy() == pytest.approx(per_user["b"].to_numpy())

    cumulative = doc["windows"]["cumulative"]
    assert cumulative["n_events"] == sum(len(b) for b in experiment.batches[:3])
    seq_block = cumulative["sequential"]["paired"]
    assert set(seq_block) == set(params.metrics)
    for metric, s in seq_block.items():
        assert s["significant"] == (s["repeated_p_holm"] <= params.alpha), metric
        low, high = s["repeated_ci"]
        assert low < s["estimate"] < high
        # the interval is taken at the Holm level, so it agrees with the current look
        assert (low > 0 or high < 0) == (abs(s["z"]) >= s["boundary_z"]), metric
    assert doc["business_impact"]["label"].startswith("PROJECTION")
    assert doc["decision"]["sentence"].startswith("Day 3 (days 1-3")

    proc = python_m(
        project,
        "recsys.abtest.report",
        *("--abtest-dir", "metrics/abtest", "--days", "3", "--out-summary"),
        *("metrics/summary.json", "--out-plot", "metrics/effects.csv"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((project / "metrics/summary.json").read_text())
    assert [d["day"] for d in summary["days"]] == [1, 2, 3]
    effects = pd.read_csv(project / "metrics/effects.csv")
    assert effects["day"].tolist() == [1, 2, 3]
    assert effects["ndcg@10"].iloc[-1] == pytest.approx(seq_block["ndcg@10"]["estimate"])


def test_same_inputs_give_the_same_bytes(project: Path):
    write_inputs(project)
    run_in_process(project, 1)
    first = (project / "metrics/abtest/day_01.json").read_bytes()
    users = (project / "artifacts/abtest/day_01.parquet").read_bytes()
    run_in_process(project, 1)
    assert (project / "metrics/abtest/day_01.json").read_bytes() == first
    assert (project / "artifacts/abtest/day_01.parquet").read_bytes() == users


def test_missing_prediction_is_one_line_naming_the_file_and_row(project: Path):
    experiment = write_inputs(project)
    preds = experiment.predictions_b
    row = experiment.batches[0].iloc[7]
    hole = (preds["user_id"] == row["user_id"]) & (preds["item_id"] == row["item_id"])
    preds[~hole].to_parquet(project / PRED_B)
    proc = run_stage(project, 1)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"abtest: error: {PRED_B}: no prediction for day_01.parquet row 7 "
        f"(user_id={row['user_id']}, item_id={row['item_id']}, timestamp={row['timestamp']})"
    ]


def test_day_2_refuses_to_run_before_day_1_or_after_an_earlier_batch_changed(project: Path):
    experiment = write_inputs(project)
    with pytest.raises(RecsysError, match=r"day_01.json: not found; run abtest@1 first"):
        run_in_process(project, 2)
    run_in_process(project, 1)
    changed = experiment.batches[0].iloc[:-1]  # the ETL rewrote day 1
    changed.to_parquet(project / "batches/day_01.parquet")
    with pytest.raises(RecsysError, match=r"day_01.parquet changed since .*day_01.json"):
        run_in_process(project, 2)


def test_sample_ratio_mismatch_fails_loudly(project: Path, monkeypatch: pytest.MonkeyPatch):
    import recsys.abtest.stage as stage

    write_inputs(project, n_events=6_000, n_users=1_000)  # ~100 users on day 1
    skewed = lambda ids, salt, share: np.arange(len(ids)) > 0  # noqa: E731  all but one in B
    monkeypatch.setattr(stage, "assign_arm_b", skewed)  # a broken assignment
    with pytest.raises(
        RecsysError, match=r"sample-ratio mismatch on day 1 \(day\): \d+ users in A"
    ):
        stage.run_abtest(
            day=1,
            batches_dir=project / "batches",
            predictions_a=project / PRED_A,
            predictions_b=project / PRED_B,
            out_metrics=project / "metrics/abtest/day_01.json",
            out_users=project / "artifacts/abtest/day_01.parquet",
            params=load_params(project / "params.yaml").abtest,
        )
    assert not (project / "metrics/abtest/day_01.json").exists()


@pytest.mark.slow
def test_dvc_repro_abtest_3_with_upstream_files_tracked_by_dvc_add(dvc_repo: Path):
    # Only the A/B stages: the batches and predictions stand in for the ETL's and the
    # evaluation's stage outputs as plain DVC-tracked files (their stages are not run here).
    pipeline = yaml.safe_load((dvc_repo / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in ("abtest", "report")}
    pipeline.pop("plots", None)
    (dvc_repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    write_inputs(dvc_repo)
    for path in ["batches", "artifacts/predictions"]:
        assert dvc(dvc_repo, "add", "-q", path).returncode == 0
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "upstream stubs")
    # the tracked folders stand in for the ETL's and evaluation's stage outputs
    text = (dvc_repo / "dvc.yaml").read_text()
    repro = dvc(dvc_repo, "repro", "--single-item", "abtest@1", "abtest@2", "abtest@3")
    assert repro.returncode == 0, repro.stderr + repro.stdout
    assert (dvc_repo / "metrics/abtest/day_03.json").is_file()
    lock = (dvc_repo / "dvc.lock").read_text()
    assert "abtest@3" in lock and "metrics/abtest/day_02.json" in lock
    again = dvc(dvc_repo, "repro", "--single-item", "abtest@3")
    assert "didn't change, skipping" in again.stdout
    assert (dvc_repo / "dvc.yaml").read_text() == text


def test_cumulative_user_means_equal_a_groupby_of_each_look():
    from recsys.abtest.analysis import cumulative_user_means
    from recsys.abtest.outcomes import event_outcomes, per_user, serve

    experiment = fake_experiment(n_events=2_000, n_users=50, n_days=5, seed=3)
    events = pd.concat(
        [b.assign(day=d) for d, b in enumerate(experiment.batches, start=1)], ignore_index=True
    )
    served = serve(events, experiment.predictions_a, experiment.predictions_b, ("a", "b"))
    outcomes = event_outcomes(served, ["sq_err", "hit@10"])
    columns = ["sq_err_a", "sq_err_b", "hit@10_a", "hit@10_b"]
    user_ids, means, n = cumulative_user_means(outcomes, columns, 5)
    for look in (1, 3, 5):
        expected = per_user(outcomes[outcomes["day"] <= look], ["sq_err", "hit@10"])
        seen = n[:, look - 1] > 0
        assert user_ids[seen].tolist() == expected["user_id"].tolist()
        assert means[seen, look - 1] == pytest.approx(expected[columns].to_numpy())
        assert n[seen, look - 1].tolist() == expected["n_events"].tolist()


def test_cli_bench_ab_json_times_every_day(tmp_path: Path):
    from recsys.config import Params

    small = {"n_days": 3, "n_bootstrap": 200, "n_permutations": 200}
    params = Params(
        abtest=load_params(PROJECT_ROOT / "params.yaml").abtest.model_copy(update=small)
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    proc = python_m(tmp_path, "recsys.cli", "bench", "ab", "--events", "2000", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["bench"] == "ab" and result["n_days"] == 3
    (size,) = result["sizes"]
    assert size["n_events"] == 2000 and size["n_users"] > 10
    assert 0 < size["slowest_day_seconds"] <= size["statistics_seconds"]
