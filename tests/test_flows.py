"""Prefect flows end to end on a tiny dataset in a real DVC repo, against a real Prefect API.

One `prefect_test_harness` (a temporary SQLite API server, tests/conftest.py) serves them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
import yaml

from flows.ab_test import ab_test
from flows.daily_etl import daily_etl, day_plan, pending_day, verdict_markdown
from flows.experiments import experiments
from flows.tasks import ALLOWED_REPOS_ENV, QualityGateFailed
from flows.training import metrics_row, training
from recsys.config import merge_into
from recsys.errors import RecsysError
from recsys.experiments import comparison_rows, set_params_args
from recsys.io import write_parquet
from recsys.pipeline import StageState
from tests.conftest import PROJECT_ROOT, dvc, git
from tests.test_pipeline import use_tiny_dataset

uses_prefect = pytest.mark.usefixtures("prefect_api")  # flow runs need the API; unit tests not
PIPELINE = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(autouse=True)
def served_repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The repositories the flows accept here, as `python -m flows.serve --repo` sets them:
    the test's repo (dvc_repo) and a second clone of it."""
    repos = [tmp_path / "repo", tmp_path / "second"]
    monkeypatch.setenv(ALLOWED_REPOS_ENV, os.pathsep.join(str(r.resolve()) for r in repos))
    return repos


def set_etl_params(repo: Path, **etl) -> None:
    """Change the repo's `etl` params and commit."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["etl"].update(etl)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "commit", "-qam", f"etl params {etl}")


def stand_in_predictions(repo: Path) -> None:
    """Both models' per-event test predictions as DVC-tracked files (seeded, deterministic).

    They stand in for the evaluate@<model> outputs the A/B stages read, so the daily flow's
    `abtest@N` and `report` run for real without training; train/evaluate stages are dropped
    from this repo's dvc.yaml, as their outputs are these tracked files.
    """
    assert dvc(repo, "repro", "split").returncode == 0
    test = pd.read_parquet(repo / "artifacts/split/test.parquet")
    rng = np.random.default_rng(0)
    for model, noise in (("ncf", 1.0), ("ss4rec", 0.5)):
        preds = test[["user_id", "item_id", "timestamp", "rating"]].assign(
            pred_rating=np.clip(test["rating"] + rng.normal(0, noise, len(test)), 1, 5),
            rank=rng.integers(1, 41, len(test)),
        )
        write_parquet(repo / f"artifacts/predictions/{model}.parquet", preds)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name in ("train", "evaluate"):
        pipeline["stages"].pop(name, None)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    assert dvc(repo, "add", "-q", "artifacts/predictions").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "split; stand-in predictions")


def prepare_tiny_repo(repo: Path) -> Path:
    """The project's pipeline on 400 synthetic ratings (test split: 40 rows), 2 days of 20."""
    use_tiny_dataset(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["etl"]["n_days"] == params["abtest"]["n_days"] == 2
    if "abtest" in PIPELINE:
        stand_in_predictions(repo)
    return repo


@pytest.fixture
def tiny_repo(dvc_repo: Path) -> Path:
    """A tiny-data repo where every daily stage can run (see prepare_tiny_repo)."""
    return prepare_tiny_repo(dvc_repo)


def task_runs(state) -> dict[str, object]:
    """The flow run's task runs by name (the last one of each name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:  # the sync client sends None for omitted args
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200,
        )  # fmt: skip
    return {run.name: run for run in runs}


def run_log(state) -> str:
    """Every log line of the flow run (its tasks' included), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs go to the API in batches
    run_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=run_filter, limit=200, sort=LogSort.TIMESTAMP_ASC)
    return "\n".join(log.message for log in logs)


def pull_steps(clone: Path) -> None:
    """What a work-pool worker runs before each flow run (configs/prefect.yaml's `pull`)."""
    spec = yaml.safe_load((PROJECT_ROOT / "configs/prefect.yaml").read_text())
    for step in spec["pull"]:
        (kind, options), = step.items()  # fmt: skip
        if kind.endswith("run_shell_script"):
            done = subprocess.run(options["script"], shell=True, cwd=clone, capture_output=True,
                                  text=True)  # fmt: skip
            assert done.returncode == 0, f"{options['script']}: {done.stderr}"


def artifacts(state) -> dict[str, object]:
    """The flow run's artifacts by key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    flow_run_id: UUID = state.state_details.flow_run_id
    run_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:  # the sync client sends None for omitted args
        found = client.read_artifacts(
            artifact_filter=run_filter, flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=100, offset=0,
        )  # fmt: skip
    return {a.key: a for a in found}


def stage(name: str, built: bool = True, stale: bool = False) -> StageState:
    outs = [f"metrics/quality/day_{name.split('@')[1]}.json"] if name.startswith("batch") else []
    return StageState(name=name, outs=outs, built=built, stale=stale, changes=[])


# ---------------------------------------------------------------- unit: the flows' own logic


def test_pending_day_is_first_day_with_a_stage_not_up_to_date():
    batches = [stage("batch@1"), stage("batch@2"), stage("batch@3", built=False)]
    assert pending_day(batches) == 3
    assert pending_day([*batches, stage("abtest@1"), stage("abtest@2", stale=True)]) == 2
    assert pending_day([stage("batch@1"), stage("abtest@1", built=False)]) == 1
    assert pending_day([stage("split"), stage("batch@1"), stage("batch@2")]) is None


def test_day_plan_skips_stages_dvc_yaml_lacks_and_reports_with_the_last_day():
    stages = [stage("batch@1"), stage("batch@2"), stage("quality"), stage("report")]
    assert day_plan(2, stages) == (
        ["batch@2", "quality", "report"],
        {"abtest@2": "not defined in dvc.yaml"},
    )
    run, skipped = day_plan(1, [*stages, stage("abtest@1")])
    assert run == ["batch@1", "abtest@1"]
    assert skipped == {
        "quality": "summarises all 2 days: runs with day 2",
        "report": "summarises all 2 days: runs with day 2",
    }


def test_verdict_markdown_reads_the_decision_sentence():
    doc = {"decision": {"sentence": "B wins.", "b_better": ["ndcg@10"], "a_better": []}}
    text = verdict_markdown(doc, "Day 3")
    assert text.splitlines()[:3] == ["## Day 3", "", "B wins."]
    assert "- B better: ndcg@10" in text and "- A better: none" in text
    assert verdict_markdown({"decision": "A wins."}, "t") == "## t\n\nA wins.\n"


def test_metrics_row_flattens_scalar_metrics_per_split():
    report = {"val": {"rmse": 1.23456, "warm": {"rmse": 1.0}}, "test": {"hr@10": 0.5}, "model": "x"}
    assert metrics_row("ncf", report) == {"model": "ncf", "val/rmse": 1.2346, "test/hr@10": 0.5}


def test_grid_arguments_and_comparison_columns():
    assert set_params_args({"a.b": [1, 2], "c": ["x"]}) == ["-S", "a.b=1,2", "-S", "c=x"]
    with pytest.raises(RecsysError, match="at least one value"):
        set_params_args({"a": []})
    shown = [
        {"Experiment": None, "rev": "main", "State": None, "a": 1, "m": 0.1, "same": 5},
        {"Experiment": "e1", "rev": "1", "State": "Success", "a": 1, "m": 0.2, "same": 5},
        {"Experiment": "e2", "rev": "2", "State": "Success", "a": 2, "m": 0.3, "same": 5},
    ]
    assert comparison_rows(shown, ["e1", "e2"], {"a": [1, 2]}) == [
        {"Experiment": "e1", "rev": "1", "State": "Success", "a": 1, "m": 0.2},
        {"Experiment": "e2", "rev": "2", "State": "Success", "a": 2, "m": 0.3},
    ]


# ---------------------------------------------------------------- end to end, real DVC repo


@uses_prefect
@pytest.mark.slow
def test_daily_etl_runs_each_day_once_and_a_second_clone_continues(tiny_repo: Path, tmp_path: Path):
    origin = tmp_path / "origin.git"  # the git remote both clones push to
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    assert (
        dvc(tiny_repo, "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote")).returncode
        == 0
    )
    git(tiny_repo, "commit", "-qam", "the shared DVC remote")
    git(tiny_repo, "remote", "add", "origin", str(origin))
    git(tiny_repo, "push", "-q", "-u", "origin", "main")
    second = tmp_path / "second"  # another host's clone, made before day 1 ran
    git(tmp_path, "clone", "-q", str(origin), str(second))

    state = daily_etl(repo=str(tiny_repo), commit=True, push=True, return_state=True)
    first = state.result()
    assert (first["day"], first["quality_passed"], first["committed"]) == (1, True, True)
    assert first["pushed"] == "origin/main"
    assert [s["stage"] for s in first["stages"]] == ["batch@1", "abtest@1"]
    assert list(first["skipped"]) == ["quality", "report"]  # need every day: run with day 2
    found = artifacts(state)
    assert {"quality-day-01", "ab-verdict-day-01", "dvc-metrics-daily"} <= set(found)
    assert "completeness" in str(found["quality-day-01"].data)
    ab_doc = json.loads((tiny_repo / "metrics/abtest/day_01.json").read_text())
    assert ab_doc["decision"]["sentence"] in found["ab-verdict-day-01"].data
    assert first["verdict"] == ab_doc["decision"]["sentence"]
    assert "metrics/quality/day_01.json" in found["dvc-metrics-daily"].data
    log = run_log(state)  # the stages' output, streamed as DVC printed it
    assert "Running stage 'batch@1':" in log and "Running stage 'abtest@1':" in log
    assert "> python -m recsys.etl.day" in log  # the command line DVC echoes for the stage
    assert git(tiny_repo, "log", "-1", "--format=%s").strip() == "daily-etl: day 1"
    assert git(origin, "log", "-1", "--format=%s", "main").strip() == "daily-etl: day 1"
    assert git(tiny_repo, "status", "--porcelain", "dvc.lock", "metrics").strip() == ""
    assert not (tiny_repo / "batches/day_02.parquet").exists()  # nothing of day 2 yet

    again = daily_etl(repo=str(tiny_repo), day=1)  # a duplicate of day 1: DVC skips it
    assert [(s["stage"], s["ran"]) for s in again["stages"]] == [
        ("batch@1", False),
        ("abtest@1", False),
    ]

    pull_steps(second)  # fast-forward to day 1's commit, `dvc pull` its outputs
    continued = daily_etl(repo=str(second), commit=True, push=True)
    assert continued["day"] == 2 and continued["committed"]
    assert [(s["stage"], s["ran"]) for s in continued["stages"]] == [
        ("batch@2", True),
        ("abtest@2", True),
        ("quality", True),
        ("report", True),
    ]
    assert (second / "metrics/summary.json").is_file()
    pushed = dvc(second, "status", "--cloud", "--json")  # local cache vs remote
    assert pushed.returncode == 0 and json.loads(pushed.stdout) == {}, pushed.stdout
    history = git(origin, "log", "--format=%s", "main").splitlines()
    assert history[:2] == ["daily-etl: day 2", "daily-etl: day 1"]

    pull_steps(tiny_repo)  # the first host catches up: nothing left to run
    done = daily_etl(repo=str(tiny_repo))
    assert done == {"day": None, "message": "all 2 days are up to date; nothing to do"}
    assert json.loads(dvc(tiny_repo, "status", "--json").stdout) == {}
    assert (tiny_repo / "metrics/summary.json").read_bytes() == (
        second / "metrics/summary.json"
    ).read_bytes()


@uses_prefect
def test_every_flow_refuses_a_repository_it_was_not_served_for(tmp_path: Path):
    foreign = tmp_path / "foreign"  # someone's pipeline, reached through the `repo` parameter
    foreign.mkdir()
    (foreign / "dvc.yaml").write_text("stages:\n  report:\n    cmd: touch pwned\n")
    for flow in (daily_etl, training, ab_test, experiments):
        state = flow(repo=str(foreign), return_state=True)
        assert state.is_failed(), flow.name
        with pytest.raises(RecsysError, match=r"is not a repository these flows were served for"):
            state.result()
        assert task_runs(state) == {}, flow.name  # refused before any task
    assert sorted(p.name for p in foreign.iterdir()) == ["dvc.yaml"]  # no lock, no output


@uses_prefect
@pytest.mark.slow
def test_failing_quality_gate_fails_the_flow_with_its_reason_and_no_retry(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)  # ratings 1..5 stars
    set_etl_params(dvc_repo, rating_max=2.0)  # 3..5 stars are now out of scale
    state = daily_etl(repo=str(dvc_repo), return_state=True)
    assert state.is_failed()
    with pytest.raises(
        QualityGateFailed, match=r"^day 1 failed quality: validity 0\.\d{4} < 0\.95"
    ):
        state.result()
    runs = task_runs(state)
    assert runs["dvc repro batch@1"].run_count == 1  # a stage's own failure is not retried
    assert "FAILED: validity" in artifacts(state)["quality-day-01"].description
    assert not (dvc_repo / "batches/day_01.parquet").exists()


@uses_prefect
@pytest.mark.slow
def test_two_concurrent_daily_runs_process_distinct_days(tiny_repo: Path):
    results: list[dict] = []
    runs = [
        threading.Thread(target=lambda: results.append(daily_etl(repo=str(tiny_repo))))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert sorted(r["day"] for r in results) == [1, 2]
    assert all(r["stages"][0]["ran"] for r in results)  # each day processed exactly once


@uses_prefect
@pytest.mark.slow
def test_experiments_queue_a_grid_and_compare(tiny_repo: Path):
    rows = experiments(
        repo=str(tiny_repo), grid={"etl.min_quality": [0.5, 0.9]}, targets=["batch@1"]
    )
    assert sorted(row["etl.min_quality"] for row in rows) == [0.5, 0.9]
    assert {row["State"] for row in rows} == {"Success"}
    assert len({row["rev"] for row in rows}) == 2


@uses_prefect
def test_training_names_the_stage_dvc_yaml_lacks(dvc_repo: Path):
    state = training(repo=str(dvc_repo), models=["nosuchmodel"], return_state=True)
    with pytest.raises(RecsysError, match=r"dvc\.yaml defines no stage train@nosuchmodel"):
        state.result()


@uses_prefect
@pytest.mark.slow
def test_ab_test_flow_for_a_day_then_cumulative(tiny_repo: Path):
    state = ab_test(repo=str(tiny_repo), day=1, return_state=True)
    day_doc = json.loads((tiny_repo / "metrics/abtest/day_01.json").read_text())
    assert day_doc["decision"]["sentence"] in state.result()
    assert "ab-verdict-day-01" in artifacts(state)
    assert not (tiny_repo / "metrics/abtest/day_02.json").exists()  # only what day 1 needs

    state = ab_test(repo=str(tiny_repo), return_state=True)
    summary = json.loads((tiny_repo / "metrics/summary.json").read_text())
    assert summary["decision"]["sentence"] in state.result()
    assert "ab-verdict-cumulative" in artifacts(state)


@uses_prefect
@pytest.mark.slow
@pytest.mark.skipif(
    not {"train", "evaluate"} <= set(PIPELINE), reason="train@/evaluate@ are not in dvc.yaml yet"
)
def test_training_flow_trains_evaluates_and_tables_the_metrics(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    smoke = yaml.safe_load((PROJECT_ROOT / "configs/smoke.yaml").read_text())
    merge_into(params, {k: v for k, v in smoke.items() if k != "data"})  # CI-size models
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(dvc_repo, "commit", "-qam", "smoke-size models")

    state = training(repo=str(dvc_repo), models=["ncf"], return_state=True)
    report = json.loads((dvc_repo / "metrics/eval/ncf.json").read_text())
    rows = state.result()
    assert rows == [metrics_row("ncf", report)]
    assert rows[0]["test/rmse"] == round(report["test"]["rmse"], 4)
    assert artifacts(state)["training-metrics"].data  # the same rows, as the UI shows them
    model_written = (dvc_repo / "models/ncf.pt").stat().st_mtime_ns
    assert training(repo=str(dvc_repo), models=["ncf"]) == rows
    assert (dvc_repo / "models/ncf.pt").stat().st_mtime_ns == model_written  # DVC skipped it
