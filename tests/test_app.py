"""The dashboard under streamlit.testing.v1.AppTest: every page with nothing, some days and
all days built; no exception, and the numbers shown are the ones in the files."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_fixture import make_project
from tests.conftest import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app" / "streamlit_app.py")
PAGES = {
    "pipeline": "Pipeline",
    "data_quality": "Data quality",
    "ab_results": "A/B results",
    "models": "Models",
    "experiments": "Experiments",
    "recommendations": "Recommendations",
}


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Three projects: nothing built, 3 days (the 3rd failed its gate), all 20 days."""
    base = tmp_path_factory.mktemp("dashboard")
    return {
        "none": make_project(base / "none", 0),
        "partial": make_project(base / "partial", 3, fail_last=True),
        "full": make_project(base / "full", 20, experiments=True),
    }


def open_page(monkeypatch: pytest.MonkeyPatch, repo: Path, page: str) -> AppTest:
    """Run the app on `page` against the project in `repo` (no Prefect server configured);
    every test checks that the page rendered without an exception, under its title."""
    monkeypatch.setenv("RECSYS_ROOT", str(repo))
    monkeypatch.setenv("PREFECT_API_URL", "")
    app = AppTest.from_file(APP, default_timeout=60)
    app.switch_page(f"views/{page}.py")
    app.run()
    assert not app.exception, texts(app.exception)
    assert texts(app.title)[0].startswith(PAGES[page])
    return app


def texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.mark.parametrize("page", list(PAGES))
def test_nothing_built_shows_what_to_run(projects, monkeypatch, page):
    app = open_page(monkeypatch, projects["none"][0], page)
    commands = " ".join(texts(app.code))
    expected = {
        "pipeline": "recsys fetch --dataset ml-100k",
        "data_quality": "recsys etl --next",
        "ab_results": "dvc repro abtest@1",
        "models": "dvc repro evaluate@ncf",
        "experiments": "dvc exp run",
        "recommendations": "dvc repro split",
    }
    assert expected[page] in commands


def metric_values(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_pipeline_full_counts_every_day(projects, monkeypatch):
    repo, facts = projects["full"]
    app = open_page(monkeypatch, repo, "pipeline")
    shown = metric_values(app)
    test_rows = facts["meta"]["test"]["n_ratings"]
    assert sum(r["rows"] for r in facts["quality"]) == test_rows  # 20 days cover the test split
    assert shown["Days processed"] == "20/20"
    assert shown["Records processed"] == f"{test_rows:,}"
    assert shown["Quarantined"] == "2"  # day 2: one duplicate, day 5: one rating of 7.0
    assert shown["Coverage of test split"] == "100.0 %"
    assert "Days processed: 20/20" in app.get("progress")[0].proto.text
    stale = app.dataframe[0].value["stage"] if app.warning else []  # stages the fixture left
    assert not [s for s in stale if s == "split" or s.startswith("batch@")]  # to other tools


def test_pipeline_partial_names_the_failed_day(projects, monkeypatch):
    repo, facts = projects["partial"]
    app = open_page(monkeypatch, repo, "pipeline")
    shown = metric_values(app)
    passed_rows = sum(r["rows"] for r in facts["quality"][:2])
    assert shown["Days processed"] == "2/20"
    assert shown["Records processed"] == f"{passed_rows:,}"
    coverage = 100 * passed_rows / facts["meta"]["test"]["n_ratings"]
    assert shown["Coverage of test split"] == f"{coverage:.1f} %"
    assert texts(app.error)[0].startswith("Day 3 failed the quality gate (validity 0.9048 < 0.95)")
    assert "recsys etl --day 3" in texts(app.code)[0]
    stale = app.dataframe[0].value["stage"].tolist()  # days 3..20 not built; split, 1-2 current
    assert [s for s in stale if s == "split" or s.startswith("batch@")] == [
        f"batch@{day}" for day in range(3, 21)
    ]


def test_pipeline_verify_names_a_damaged_output_and_its_restore(projects, monkeypatch):
    repo, _ = projects["full"]
    app = open_page(monkeypatch, repo, "pipeline")
    app.button(key="verify-outputs").click().run()
    intact = texts(app.success)[-1]
    assert re.fullmatch(r"(\d+) of \1 tracked files match their recorded md5; none damaged",
                        intact), intact  # fmt: skip
    val = repo / "artifacts" / "split" / "val.parquet"
    original = val.read_bytes()
    try:
        val.write_bytes(original[:100] + b"\x00" * 8 + original[108:])  # same size, bad bytes
        app.button(key="verify-outputs").click().run()
        shown = texts(app.error)
    finally:
        val.write_bytes(original)
    assert shown[0].endswith("1 DAMAGED:")
    assert shown[1].startswith("**corrupted**: `artifacts/split/val.parquet` (split): md5 ")
    assert shown[1].endswith("Restore: `rm artifacts/split/val.parquet && dvc checkout "
                             "artifacts/split/val.parquet` (the cache copy is intact)")  # fmt: skip


def test_pipeline_nothing_built_lists_the_stage_to_build(projects, monkeypatch):
    app = open_page(monkeypatch, projects["none"][0], "pipeline")
    assert metric_values(app)["Days processed"] == "0/20"
    stale = app.dataframe[0].value
    stages = stale["stage"].tolist()
    models = [f"{kind}@{m}" for kind in ("train", "evaluate") for m in ("ncf", "ss4rec")]
    assert stages[:25] == ["split", *models, *(f"batch@{day}" for day in range(1, 21))]
    assert not stale["built"].any()
    assert texts(app.code)[0].startswith("recsys fetch --dataset ml-100k")


def test_data_quality_table_equals_files(projects, monkeypatch):
    repo, facts = projects["full"]
    app = open_page(monkeypatch, repo, "data_quality")
    table = app.dataframe[0].value
    for metric in ("completeness", "validity", "uniqueness", "consistency"):
        assert table[metric].tolist() == [r[metric] for r in facts["quality"]]
    assert table["day"].tolist() == list(range(1, 21))
    assert not app.error
    counts = app.dataframe[1].value
    assert counts.to_dict("records") == [
        {"day": 2, "reason": "duplicate", "rows": 1},
        {"day": 5, "reason": "rating_out_of_scale", "rows": 1},
    ]


def test_data_quality_alerts_the_failed_day(projects, monkeypatch):
    repo, facts = projects["partial"]
    app = open_page(monkeypatch, repo, "data_quality")
    day3 = facts["quality"][2]
    assert day3["validity"] == round(1 - 2 / day3["rows"], 6) < 0.95
    expected = f"Day 3 is under the quality threshold: validity {day3['validity']:.4f} < 0.95"
    assert texts(app.error) == [expected]
    app.selectbox[0].select("rating_out_of_scale").run()
    rows = app.dataframe[2].value
    assert len(rows) == 2 and set(rows["rating"]) == {7.0} and set(rows["day"]) == {3}


def test_ab_results_full_shows_decision_tests_and_projection(projects, monkeypatch):
    repo, facts = projects["full"]
    last = facts["abtest"][-1]
    app = open_page(monkeypatch, repo, "ab_results")
    assert texts(app.success)[0] == last["decision"]["sentence"]
    assert last["framing"] in texts(app.caption)  # an offline replay, said so
    sequential = app.dataframe[0].value.set_index(["design", "metric"])
    final = last["windows"]["cumulative"]["sequential"]["paired"]["ndcg@10"]
    assert sequential.loc[("paired", "ndcg@10"), "MDE (relative to A)"] == final["mde_relative"]
    assert (
        sequential.loc[("paired", "ndcg@10"), "simultaneous_ci_low"] == final["simultaneous_ci"][0]
    )
    pvalues = app.dataframe[1].value.set_index(["design", "metric"])
    paired = last["windows"]["cumulative"]["paired"]["hit@10"]
    assert pvalues.loc[("paired", "hit@10"), "p_value"] == paired["p_value"]
    assert pvalues.loc[("paired", "hit@10"), "p_value_holm"] == paired["p_value_holm"]
    assert pvalues.loc[("paired", "hit@10"), "per-event p"] == paired["per_event"]["p_value"]
    randomised = last["windows"]["cumulative"]["randomised"]["metrics"]["sq_err"]
    assert pvalues.loc[("user-randomised", "sq_err"), "estimate (B - A)"] == randomised["estimate"]
    assert pvalues.loc[("user-randomised", "sq_err"), "role"] == "guardrail"
    srm = app.dataframe[2].value
    assert srm["p_value"].tolist() == [
        last["windows"]["cumulative"]["randomised"]["srm"]["p_value"]
    ]
    impact = last["business_impact"]
    assert metric_values(app)["Projected value per day"].startswith(f"{impact['daily_value']:,.2f}")
    assumptions = dict(app.dataframe[3].value.values.tolist())
    assert assumptions == {k: str(v) for k, v in impact["assumptions"].items()}
    assert impact["label"] in texts(app.warning)
    guard = last["windows"]["cumulative"]["guardrails"]["paired"]["sq_err"]
    assert app.table[0].value["verdict"].tolist() == [guard["verdict"]]
    # the effect chart fits days 3+: day 1's interval is clipped, and the caption says so
    assert any("days 3 onwards" in c and "day(s) 1" in c for c in texts(app.caption))


def test_ab_results_pick_an_earlier_look(projects, monkeypatch):
    repo, facts = projects["full"]
    app = open_page(monkeypatch, repo, "ab_results")
    app.select_slider[0].set_value(10).run()
    sentence = facts["abtest"][9]["decision"]["sentence"]
    assert sentence in texts(app.success) + texts(app.info)


def test_ab_results_partial_uses_the_last_look(projects, monkeypatch):
    repo, facts = projects["partial"]
    app = open_page(monkeypatch, repo, "ab_results")
    assert len(facts["abtest"]) == 2  # day 3 failed its gate: no A/B look
    shown = texts(app.success) + texts(app.info)
    assert facts["abtest"][1]["decision"]["sentence"] in shown
    assert not any("Report over" in s for s in texts(app.subheader))  # no summary.json yet


def test_models_tables_equal_eval_files(projects, monkeypatch):
    repo, facts = projects["full"]
    app = open_page(monkeypatch, repo, "models")
    main, warm, cold = (app.dataframe[i].value.set_index("model") for i in range(3))
    for model, report in facts["eval"].items():
        for metric in ("rmse", "mae", "hr@10", "ndcg@10", "mrr@10"):
            assert main.loc[model, metric] == report["test"][metric]
            assert warm.loc[model, metric] == report["test"]["warm"][metric]
            assert cold.loc[model, metric] == report["test"]["cold"][metric]
        epochs = report["epochs"]
        assert (main.loc[model, "rank epoch"], main.loc[model, "rating epoch"]) == (
            epochs["ranking"], epochs["rating"]
        )  # fmt: skip
    assert (main.loc["ss4rec", "rank epoch"], main.loc["ss4rec", "rating epoch"]) == (3, 2)
    bias = facts["eval"]["ncf"]["baselines"]["bias"]["test"]["rmse"]
    assert main.loc["bias (baseline)", "rmse"] == bias
    app.radio[0].set_value("val").run()
    val = app.dataframe[0].value.set_index("model")
    assert val.loc["ss4rec", "rmse"] == facts["eval"]["ss4rec"]["val"]["rmse"]
    # the one info box: no model promoted in this project yet; learning curves were found
    assert [i.value for i in app.info] == [
        "No model is in a registry stage yet (GTO tags of the dvc.yaml artifacts). Run this in "
        "the project folder:"
    ]


def test_learning_curves_read_from_dvclive(projects):
    from app import data

    curves = data.learning_curves(projects["full"][0])
    loss = curves[(curves["model"] == "ncf") & (curves["metric"] == "train/loss")]
    assert loss["step"].tolist() == [1, 2, 3]
    assert loss["value"].tolist() == pytest.approx([2.0, 1.0, 2 / 3])


def test_experiments_table_and_diff(projects, monkeypatch):
    repo, _ = projects["full"]
    app = open_page(monkeypatch, repo, "experiments")
    table = app.dataframe[0].value
    assert {"exp-small-val", "exp-big-val"} <= set(table["Experiment"].dropna())
    app.selectbox[0].select("exp-small-val")
    app.selectbox[1].select("exp-big-val").run()
    diff = app.dataframe[1].value.set_index("column")
    assert diff.loc["split.val_frac"].tolist() == ["0.05", "0.2"]
    rmse = next(c for c in diff.index if c.endswith("test.rmse"))
    assert diff.loc[rmse].tolist() == ["0.99", "0.97"]


def test_recommendations_history_equals_split(projects, monkeypatch):
    repo, _ = projects["full"]
    app = open_page(monkeypatch, repo, "recommendations")
    user = app.selectbox[0].value
    split = repo / "artifacts" / "split"
    events = pd.concat(pd.read_parquet(split / f"{p}.parquet") for p in ("train", "val", "test"))
    mine = events[events["user_id"] == user].sort_values(["timestamp", "item_id"]).tail(15)
    history = app.dataframe[0].value
    assert history["rating"].tolist() == mine["rating"].tolist()[::-1]
    assert history["title"].iloc[0].startswith(f"Movie {mine['item_id'].iloc[-1]} (")


def test_recommendations_top10_from_checkpoint(projects, monkeypatch):
    repo, _ = projects["full"]
    import torch

    app = open_page(monkeypatch, repo, "recommendations")
    user = app.selectbox[0].value
    top = app.dataframe[1].value
    state = torch.load(repo / "models" / "bias.pt", weights_only=True)["state_dict"]
    items = pd.read_parquet(repo / "artifacts" / "split" / "items.parquet")
    split = repo / "artifacts" / "split"
    events = pd.concat(pd.read_parquet(split / f"{p}.parquet") for p in ("train", "val", "test"))
    seen = set(events.loc[events["user_id"] == user, "item_id"])  # never recommended again
    bias = pd.Series(state["item_bias"].numpy()[items["idx"]], index=items["raw_id"])
    expected = bias.drop(index=[i for i in bias.index if i in seen]).nlargest(10)
    assert top["score"].tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert top["item_id"].tolist() == expected.index.tolist()
    assert top["title"].tolist() == [f"Movie {i} ({1990 + i % 9})" for i in expected.index]


def test_partial_models_experiments_recommendations(projects, monkeypatch):
    repo, facts = projects["partial"]
    models = open_page(monkeypatch, repo, "models").dataframe[0].value.set_index("model")
    assert models.loc["ncf", "ndcg@10"] == facts["eval"]["ncf"]["test"]["ndcg@10"]
    experiments = open_page(monkeypatch, repo, "experiments")
    assert "dvc exp run" in texts(experiments.code)[0]  # commits only, no experiment yet
    recommendations = open_page(monkeypatch, repo, "recommendations")
    assert len(recommendations.dataframe[0].value) == 15


def test_controls_disabled_without_server(projects, monkeypatch):
    monkeypatch.setenv("RECSYS_CONTROLS", "1")  # on, but no Prefect API to start runs on
    app = open_page(monkeypatch, projects["full"][0], "pipeline")
    buttons = [b for b in app.sidebar.button if b.label != "Refresh states"]
    assert [b.label for b in buttons] == ["Process next day", "Run A/B test", "Retrain"]
    assert all(b.disabled for b in buttons)
    assert any("prefect server start" in c for c in texts(app.sidebar.code))


def test_pipeline_with_a_broken_dvc_yaml_says_why(monkeypatch, tmp_path):
    repo, _ = make_project(tmp_path / "broken", 0)
    (repo / "dvc.yaml").write_text("stages:\n  split:\n    cmd: [unclosed\n")
    app = open_page(monkeypatch, repo, "pipeline")
    warning = texts(app.warning)[0]
    assert warning.startswith("DVC could not report the pipeline's state just now: DVC could")
    assert "dvc.yaml" in warning


@pytest.mark.parametrize("model_name", ["ncf", "ss4rec"])
def test_recommend_serves_the_neural_models_checkpoints(projects, tmp_path, model_name):
    """NCF and SS4Rec checkpoints (smoke size, as the train stage writes them) serve a top-10."""
    import shutil

    from app.data import all_events, recommend
    from recsys.config import apply_preset, load_params
    from recsys.models.registry import model_class
    from recsys.training.checkpoint import model_payload, save_checkpoint
    from recsys.training.tensors import load_split

    repo, _ = projects["full"]
    shutil.copytree(repo / "artifacts" / "split", tmp_path / "artifacts" / "split")
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    apply_preset("smoke", tmp_path / "params.yaml", PROJECT_ROOT / "configs")
    data = load_split(tmp_path / "artifacts" / "split")
    config = getattr(load_params(tmp_path / "params.yaml"), model_name)
    model = model_class(model_name)(config, data.spec)
    payload = model_payload(model, config, data.spec, data.fingerprint)
    save_checkpoint(tmp_path / "models" / f"{model_name}.pt",
                    {**payload, "state_dict": model.state_dict()})  # fmt: skip

    events = all_events(tmp_path)
    user = int(events["user_id"].iloc[-1])
    top = recommend(tmp_path, model_name, events, user)
    seen = set(events.loc[events["user_id"] == user, "item_id"])
    assert len(top) == 10 and not seen & set(top["item_id"])
    assert top["score"].is_monotonic_decreasing and top["score"].map(float).notna().all()
