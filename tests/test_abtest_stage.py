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


WARM = list(range(1, 31))  # users with training ratings in the stand-in split


def write_inputs(root: Path, n_events: int = 3_000, n_users: int = 60):
    experiment = fake_experiment(n_events=n_events, n_users=n_users, seed=0)
    write_experiment(experiment, root / "batches", root / PRED_A, root / PRED_B)
    (root / "artifacts/split").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": WARM}).to_parquet(root / "artifacts/split/train.parquet")
    return experiment


def run_stage(root: Path, day: int) -> subprocess.CompletedProcess:
    args = [
        *("--day", str(day), "--batches", "batches", "--predictions-a", PRED_A),
        *("--predictions-b", PRED_B, "--out-metrics", f"metrics/abtest/day_{day:02d}.json"),
        *("--out-users", f"artifacts/abtest/day_{day:02d}.parquet", "--split", "artifacts/split"),
    ]
    return python_m(root, "recsys.abtest.stage", *args)


def run_in_process(root: Path, day: int, **update) -> dict:
    """The same stage function the CLI calls, without the interpreter start-up."""
    from recsys.abtest.stage import run_abtest

    params = load_params(root / "params.yaml").abtest.model_copy(update=update)
    return run_abtest(
        split_dir=root / "artifacts/split",
        day=day,
        batches_dir=root / "batches",
        predictions_a=root / PRED_A,
        predictions_b=root / PRED_B,
        out_metrics=root / f"metrics/abtest/day_{day:02d}.json",
        out_users=root / f"artifacts/abtest/day_{day:02d}.parquet",
        params=params,
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
        assert proc.stdout.startswith(f"Offline replay, day {day} (days 1-{day}, ")
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
    # per event: every event weighs the same
    per_event = day["paired"]["ndcg@10"]["per_event"]
    assert per_event["estimate"] == pytest.approx((ndcg["b"] - ndcg["a"]).mean())
    assert per_event["mean_a"] == pytest.approx(ndcg["a"].mean())

    users = pd.read_parquet(project / "artifacts/abtest/day_03.parquet")
    assert users["user_id"].tolist() == sorted(batch["user_id"].unique())
    arm_b = assign_arm_b(users["user_id"].to_numpy(), params.salt, params.share_b)
    assert users["arm"].tolist() == np.where(arm_b, "B", "A").tolist()
    assert users["ndcg@10_b"].to_numpy() == pytest.approx(per_user["b"].to_numpy())

    cumulative = doc["windows"]["cumulative"]
    assert cumulative["n_events"] == sum(len(b) for b in experiment.batches[:3])
    seq_block = cumulative["sequential"]["paired"]
    assert set(seq_block) == set(params.metrics) == {"hit@10", "ndcg@10", "rr@10"}
    for metric, s in seq_block.items():
        assert s["significant"] == (s["repeated_p_holm"] <= params.alpha), metric
        low, high = s["repeated_ci"]
        assert low < s["estimate"] < high
        # labels tell the truth: 95 % per metric; the simultaneous one is wider, at 1 - 0.05/3
        assert s["repeated_ci_level"] == 0.95
        assert s["simultaneous_ci_level"] == pytest.approx(1 - 0.05 / 3)
        assert s["simultaneous_ci"][0] < low and s["simultaneous_ci"][1] > high
        assert s["mde"] > 0 and s["mde_relative"] == pytest.approx(s["mde"] / s["mean_a"])
    # the guardrail is outside the Holm family and has a non-inferiority verdict
    assert cumulative["paired"]["sq_err"]["role"] == "guardrail"
    assert "p_value_holm" not in cumulative["paired"]["sq_err"]
    guard = cumulative["guardrails"]["paired"]["sq_err"]
    assert guard["margin"] == pytest.approx(0.05 * guard["mean_a"])
    assert guard["verdict"] in ("non-inferior", "inconclusive", "inferior")
    warm = doc["segments"]["history"]["metrics"]["ndcg@10"]["warm"]
    assert warm["n_users"] == len(set(WARM) & set(batch_users(experiment, 3)))
    assert doc["business_impact"]["label"].startswith("PROJECTION")
    assert doc["business_impact"]["line"].startswith("PROJECTION, not measured: ")
    assert doc["decision"]["sentence"].startswith("Offline replay, day 3 (days 1-3")
    assert doc["checkpoints"].startswith("one checkpoint each")

    proc = python_m(
        project,
        "recsys.abtest.report",
        *("--abtest-dir", "metrics/abtest", "--days", "3", "--out-summary"),
        *("metrics/summary.json", "--out-plot", "metrics/effects.csv"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((project / "metrics/summary.json").read_text())
    assert [d["day"] for d in summary["days"]] == [1, 2, 3]
    assert summary["what_was_compared"].startswith("Offline replay, not a live A/B test")
    assert summary["guardrails"]["sq_err"] == cumulative["guardrails"]["paired"]["sq_err"]
    assert summary["randomised_design"]["valid"] is True and summary["seeds"] is None
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


def batch_users(experiment, day: int) -> set:
    return set(pd.concat(experiment.batches[:day])["user_id"])


def test_a_chance_srm_marks_the_randomised_design_invalid_and_stops_nothing(project: Path):
    # the issue's case: this salt puts 3 of day 1's 30 users in A (chi2 p = 1e-5 stopped the
    # pipeline); the exact test still flags it, on the cumulative window, for the
    # randomised design only: the paired decision and the later days go on
    experiment = fake_experiment(10_000, seed=0)
    write_experiment(experiment, project / "batches", project / PRED_A, project / PRED_B)
    (project / "artifacts/split").mkdir(parents=True)
    pd.DataFrame({"user_id": WARM}).to_parquet(project / "artifacts/split/train.parquet")
    doc = run_in_process(project, 1, salt="abtest-111")
    randomised = doc["windows"]["cumulative"]["randomised"]
    assert (randomised["srm"]["n_a"], randomised["srm"]["n_b"]) == (3, 27)
    assert randomised["srm"]["p_value"] == pytest.approx(2 * 4_526 / 2**30)  # exact binomial
    assert (
        not randomised["valid"]
        and "randomised design's results are invalid" in randomised["reason"]
    )
    assert doc["decision"]["valid"] and doc["decision"]["design"] == "paired"
    assert (project / "metrics/abtest/day_01.json").is_file()
    later = run_in_process(project, 2, salt="abtest-111")  # the next day runs
    assert later["decision"]["sentence"].startswith("Offline replay, day 2")
    # a randomised decision is withheld, and says why
    blocked = run_in_process(project, 2, salt="abtest-111", decision_design="randomised")
    assert blocked["decision"]["sentence"].startswith("Offline replay, day 2: no decision: ")
    assert not blocked["decision"]["valid"] and blocked["decision"]["b_better"] == []


@pytest.mark.slow
def test_dvc_repro_abtest_3_with_upstream_files_tracked_by_dvc_add(dvc_repo: Path):
    # Only the A/B stages: the batches and predictions stand in for the ETL's and the
    # evaluation's stage outputs as plain DVC-tracked files (their stages are not run here).
    pipeline = yaml.safe_load((dvc_repo / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in ("abtest", "report")}
    pipeline.pop("plots", None)
    (dvc_repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    write_inputs(dvc_repo)
    for path in ["batches", "artifacts/predictions", "artifacts/split"]:
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
