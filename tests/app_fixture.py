"""A realistic project for the dashboard tests, in the producers' exact output formats.

`build_project(repo, days=...)` fills a real git + DVC repository (tests/conftest.py style)
with: a tiny ratings file run through the real split, movies.csv, the daily quality reports
and quarantine files (format of recsys/etl/day.py, branch etl), A/B looks and the summary
(recorded from recsys.abtest.stage / recsys.abtest.report, branch abstats: tests/data), evaluation
reports (format of recsys/training/evaluate.py, branch train), dvclive learning curves written by
dvclive itself, and — where the registry's `bias` baseline exists — a real checkpoint.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import BiasParams, load_params
from recsys.etl.split import run_split
from recsys.training.checkpoint import model_payload, save_checkpoint
from recsys.training.evaluate import fit_baselines
from recsys.training.tensors import EventLog, load_split
from tests.conftest import make_dvc_repo

DATA = Path(__file__).parent / "data"
N_DAYS = 20
# Rows spoiled in the test split before the daily batches run (21 rows a day): one bad row
# still passes (20/21 > 0.95), two fail (19/21 < 0.95).
DUPLICATE_ON_DAY = 2  # one row repeats the (user, item, timestamp) of the row before it
OUT_OF_SCALE_ON_DAY = 5  # one rating of 7.0
FAILING_DAY_BAD_ROWS = 2  # ratings of 7.0 on the failing day


def write_json(path: Path, doc: dict) -> None:
    """Pretty JSON, as recsys.io.write_json writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def ratings(n_users: int = 60, n_items: int = 120, per_user: int = 70, seed: int = 0):
    """Unique (user, item) ratings spread over 40 days, sorted as the canonical CSV."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    items = np.concatenate(
        [rng.choice(n_items, per_user, replace=False) + 1 for _ in users[::per_user]]
    )
    timestamps = 880_000_000 + rng.integers(0, 40 * 86_400, users.size)
    frame = pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": rng.integers(1, 6, users.size).astype(float),
         "timestamp": timestamps}
    )  # fmt: skip
    return frame.sort_values(["timestamp", "user_id", "item_id"], ignore_index=True)


def write_data(repo: Path) -> dict:
    """data/ml-100k/{ratings,movies}.csv and the real split; returns the split's meta.json."""
    folder = repo / "data" / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    frame = ratings()
    frame.to_csv(folder / "ratings.csv", index=False)
    items = np.arange(1, 121)
    pd.DataFrame(
        {"item_id": items, "title": [f"Movie {i} ({1990 + i % 9})" for i in items],
         "year": 1990 + items % 9, "genres": "Drama|Comedy"}
    ).to_csv(folder / "movies.csv", index=False)  # fmt: skip
    params = load_params(repo / "params.yaml").split
    return run_split(folder / "ratings.csv", repo / "artifacts" / "split", params)


def spoil_test_split(repo: Path, failing_day: int | None) -> None:
    """Put the rows the quality gate must catch into artifacts/split/test.parquet."""
    from recsys.etl.day import day_bounds

    path = repo / "artifacts" / "split" / "test.parquet"
    test = pd.read_parquet(path)
    starts = day_bounds(len(test), N_DAYS)[:-1]
    first = starts[DUPLICATE_ON_DAY - 1] + 1
    test.loc[first, ["user_id", "item_id", "timestamp"]] = test.loc[
        first - 1, ["user_id", "item_id", "timestamp"]
    ].to_numpy()
    test.loc[starts[OUT_OF_SCALE_ON_DAY - 1] + 3, "rating"] = 7.0
    if failing_day is not None:
        rows = starts[failing_day - 1] + np.arange(FAILING_DAY_BAD_ROWS)
        test.loc[rows, "rating"] = 7.0
    test.to_parquet(path, index=False)


def run_days(repo: Path, days: int, fail_last: bool) -> list[dict]:
    """Run the real batch stage code (recsys.batch.run_batch) for days 1..days, in order; the
    last one fails its gate when `fail_last`. Returns the quality reports."""
    from recsys.errors import RecsysError
    from recsys.etl.day import run_batch

    spoil_test_split(repo, days if fail_last else None)
    params = load_params(repo / "params.yaml").etl
    for day in range(1, days + 1):
        nn = f"{day:02d}"
        try:
            run_batch(
                day, repo / "artifacts" / "split", repo / "batches" / f"day_{nn}.parquet",
                repo / "batches" / "quarantine" / f"day_{nn}.parquet",
                repo / "metrics" / "quality" / f"day_{nn}.json", params,
            )  # fmt: skip
        except RecsysError:
            assert fail_last and day == days, f"day {day} failed unexpectedly"
    folder = repo / "metrics" / "quality"
    return [json.loads((folder / f"day_{d:02d}.json").read_text()) for d in range(1, days + 1)]


def recorded_abtest() -> dict:
    """The recorded A/B looks (20 days) and summary from the real abtest/report stages."""
    with gzip.open(DATA / "abtest_days.json.gz") as fh:
        return json.loads(fh.read())


def write_abtest(repo: Path, days: int) -> list[dict]:
    """metrics/abtest/day_NN.json for days 1..days, and metrics/summary.json when all 20 ran."""
    recorded = recorded_abtest()
    docs = recorded["days"][:days]
    for doc in docs:
        write_json(repo / "metrics" / "abtest" / f"day_{doc['day']:02d}.json", doc)
    if days == N_DAYS:
        write_json(repo / "metrics" / "summary.json", recorded["summary"])
    return docs


def _scores(rmse: float, hr: float, n: int) -> dict:
    return {"rmse": rmse, "mae": round(rmse * 0.8, 4), "hr@10": hr, "ndcg@10": round(hr / 2, 4),
            "mrr@10": round(hr / 3, 4), "n_events": n, "n_unknown_items": 1}  # fmt: skip


def eval_report(model: str, rmse: float, hr: float, epochs: tuple[int, int]) -> dict:
    """metrics/eval/<model>.json in the format of recsys.evaluate.evaluate_checkpoint."""

    def part(r: float, h: float, n: int) -> dict:
        return {**_scores(r, h, n), "warm": _scores(r - 0.05, h + 0.02, n - 40),
                "cold": _scores(r + 0.1, h - 0.03, 40)}  # fmt: skip

    baselines = {"mean": {"val": part(1.15, 0.02, 60), "test": part(1.14, 0.021, 60)},
                 "bias": {"val": part(1.04, 0.03, 60), "test": part(1.03, 0.031, 60)}}  # fmt: skip
    return {"val": part(rmse - 0.01, hr + 0.01, 60), "test": part(rmse, hr, 60),
            "baselines": baselines, "model": model, "n_items": 60,
            "epochs": {"ranking": epochs[0], "rating": epochs[1]}, "notes": {}}  # fmt: skip


def write_models(repo: Path) -> dict[str, dict]:
    """Evaluation reports and dvclive learning curves of ncf and ss4rec."""
    from dvclive import Live

    reports = {
        "ncf": eval_report("ncf", 0.981, 0.074, (3, 3)),
        "ss4rec": eval_report("ss4rec", 0.962, 0.112, (3, 2)),
    }
    for model, report in reports.items():
        write_json(repo / "metrics" / "eval" / f"{model}.json", report)
        with Live(str(repo / "dvclive" / model), save_dvc_exp=False, dvcyaml=None) as live:
            for epoch in range(1, 4):
                live.step = epoch
                live.log_metric("train/loss", 2.0 / epoch)
                live.log_metric("val/ndcg@10", report["val"]["ndcg@10"] * epoch / 3)
                live.make_summary()
    return reports


def write_checkpoint(repo: Path) -> None:
    """models/bias.pt: the real user+item bias baseline fitted on the split."""
    data = load_split(repo / "artifacts" / "split")
    model = fit_baselines(data, EventLog(data), BiasParams())["bias"]
    payload = model_payload(model, model.config, data.spec, data.fingerprint)
    save_checkpoint(repo / "models" / "bias.pt", {**payload, "state_dict": model.state_dict()})


def build_project(repo: Path, days: int, fail_last: bool = False) -> dict:
    """Everything the dashboard reads after `days` daily runs (0: nothing built); when
    `fail_last`, the last day failed its quality gate, so it has no A/B look."""
    facts: dict = {"days": days}
    if days == 0:
        return facts
    facts["meta"] = write_data(repo)
    facts["quality"] = run_days(repo, days, fail_last)
    facts["abtest"] = write_abtest(repo, days - fail_last)
    facts["eval"] = write_models(repo)
    write_checkpoint(repo)
    return facts


GIT_ENV = {
    "GIT_AUTHOR_NAME": "recsys tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "recsys tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "DVC_NO_ANALYTICS": "1",
}
# metrics the experiments table reads (the real pipeline declares them on its stages)
TOP_LEVEL_METRICS = "\nmetrics:\n  - metrics/eval/ncf.json\n  - metrics/eval/ss4rec.json\n"


def run(repo: Path, *args: str) -> str:
    """Run a command in `repo`, failing with its stderr."""
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dvc(repo: Path, *args: str) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args)


def save_experiments(repo: Path) -> None:
    """Two `dvc exp save` experiments that differ in one param and one metric.

    `exp save` stores every stage's outputs, and this project has no trained models, so the
    experiments are saved from a dvc.yaml that only declares the metrics; HEAD keeps the real
    pipeline (with those metrics declared, as the real evaluate stages do)."""
    pipeline = (repo / "dvc.yaml").read_text()
    if "metrics/eval/ncf.json" not in pipeline:
        pipeline += TOP_LEVEL_METRICS
        (repo / "dvc.yaml").write_text(pipeline)
        run(repo, "git", "add", "dvc.yaml")
        run(repo, "git", "commit", "-q", "-m", "declare metrics")
    eval_path = repo / "metrics" / "eval" / "ncf.json"
    original_params, original_eval = (repo / "params.yaml").read_text(), eval_path.read_text()
    (repo / "dvc.yaml").write_text(TOP_LEVEL_METRICS)
    for name, val_frac, rmse in (("exp-small-val", "0.05", 0.99), ("exp-big-val", "0.2", 0.97)):
        params = original_params.replace("val_frac: 0.1 ", f"val_frac: {val_frac} ")
        (repo / "params.yaml").write_text(params)
        report = json.loads(original_eval)
        report["test"]["rmse"] = rmse
        eval_path.write_text(json.dumps(report))
        dvc(repo, "exp", "save", "-n", name, "-f", "--include-untracked", "metrics/eval/ncf.json")
    (repo / "params.yaml").write_text(original_params)
    (repo / "dvc.yaml").write_text(pipeline)
    eval_path.write_text(original_eval)


def make_project(path: Path, days: int, fail_last: bool = False, experiments: bool = False):
    """A new git + DVC repo at `path` holding everything of `days` daily runs; its facts."""
    import pytest

    with pytest.MonkeyPatch.context() as env:
        for key, value in GIT_ENV.items():
            env.setenv(key, value)
        repo = make_dvc_repo(path)
        facts = build_project(repo, days, fail_last)
        if experiments:
            save_experiments(repo)
        if days:  # the stages above ran outside DVC: record their outputs in dvc.lock
            from dvc.repo import Repo

            done = [f"batch@{d}" for d in range(1, days + 1 - fail_last)]
            env.chdir(repo)  # DVC resolves a stage's paths against the working directory
            with Repo(".") as dvc_repo:  # in-process `dvc commit -f split batch@1 ...`
                for target in ("split", *done):
                    dvc_repo.commit(target, force=True)
    return repo, facts
