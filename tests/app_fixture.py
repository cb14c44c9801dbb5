"""A realistic project for the dashboard tests, in the producers' exact output formats.

`build_project(repo, days=...)` fills a real git + DVC repository (tests/conftest.py style)
with: a tiny ratings file run through the real split, movies.csv, the daily quality reports
and quarantine files (format of recsys/batch.py, branch etl), A/B looks and the summary
(recorded from recsys.abtest.stage / recsys.report, branch abstats: tests/data), evaluation
reports (format of recsys/evaluate.py, branch train), dvclive learning curves written by
dvclive itself, and — where the registry's `bias` baseline exists — a real checkpoint.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import load_params
from recsys.split import run_split
from tests.conftest import PIPELINE_FILES, PROJECT_ROOT

DATA = Path(__file__).parent / "data"
N_DAYS = 20
MIN_QUALITY = 0.95
# reason -> quality metric, as recsys/quality.py (branch etl) defines them
REASONS = {
    "missing_field": "completeness",
    "not_a_number": "validity",
    "bad_id": "validity",
    "rating_out_of_scale": "validity",
    "bad_timestamp": "validity",
    "future_timestamp": "validity",
    "outside_day_window": "validity",
    "duplicate": "uniqueness",
    "before_item_first_seen": "consistency",
    "user_time_order": "consistency",
}
# day -> {reason: rows quarantined}: one row on a passing day (21 rows a day: 20/21 > 0.95)
QUARANTINED = {2: {"duplicate": 1}, 5: {"user_time_order": 1}}
FAILING = {"rating_out_of_scale": 2}  # a failed day: validity 19/21 = 0.9048 < 0.95


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


def quality_report(day: int, rows: pd.DataFrame, bad: dict[str, int]) -> dict:
    """A day's quality JSON in the format of recsys.batch.quality_report."""
    n = len(rows)
    scores = {m: 1.0 for m in ("completeness", "validity", "uniqueness", "consistency")}
    for reason, count in bad.items():
        scores[REASONS[reason]] -= count / n
    failed = [f"{m} {s:.4f} < {MIN_QUALITY}" for m, s in scores.items() if s < MIN_QUALITY]
    n_bad = sum(bad.values())
    return {
        "day": day, "n_days": N_DAYS,
        "window": {"first_timestamp": int(rows["timestamp"].min()),
                   "last_timestamp": int(rows["timestamp"].max())},
        "rows": n, "accepted": n - n_bad, "quarantined": n_bad,
        "quarantine_by_reason": {r: bad.get(r, 0) for r in REASONS},
        **{m: round(s, 6) for m, s in scores.items()},
        "min_quality": MIN_QUALITY, "schema": "unchanged", "passed": not failed,
        "failed_checks": failed, "new_users": 2, "new_user_rows": 5, "new_items": 0,
        "new_item_rows": 0,
    }  # fmt: skip


def write_days(repo: Path, days: int, fail_last: bool) -> list[dict]:
    """Quality reports, timing files and quarantine parquet of days 1..days (the last one
    failed when `fail_last`: the ETL stops there)."""
    test = pd.read_parquet(repo / "artifacts" / "split" / "test.parquet")
    bounds = np.linspace(0, len(test), N_DAYS + 1).round().astype(int)
    reports = []
    for day in range(1, days + 1):
        rows = test.iloc[bounds[day - 1] : bounds[day]].reset_index(drop=True)
        bad = FAILING if fail_last and day == days else QUARANTINED.get(day, {})
        report = quality_report(day, rows, bad)
        quality = repo / "metrics" / "quality" / f"day_{day:02d}.json"
        write_json(quality, report)
        timing = {"day": day, "rows": len(rows), "duration_s": 0.05, "rows_per_s": 600.0}
        write_json(quality.with_suffix(".timing.json"), timing)
        reasons = [r for r, n in bad.items() for _ in range(n)]
        ratings_shown = (
            rows["rating"]
            .head(len(reasons))
            .where(pd.Series(reasons, dtype=object) != "rating_out_of_scale", 7.0)
        )
        flagged = rows.head(len(reasons)).assign(
            rating=ratings_shown.to_numpy(),
            new_user=False, new_item=False, reason=pd.array(reasons, dtype="string"),
            position=np.arange(len(reasons)) + bounds[day - 1],
        )  # fmt: skip
        path = repo / "batches" / "quarantine" / f"day_{day:02d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        flagged.to_parquet(path, index=False)
        reports.append(report)
    return reports


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


def eval_report(model: str, rmse: float, hr: float) -> dict:
    """metrics/eval/<model>.json in the format of recsys.evaluate.evaluate_checkpoint."""

    def part(r: float, h: float, n: int) -> dict:
        return {**_scores(r, h, n), "warm": _scores(r - 0.05, h + 0.02, n - 40),
                "cold": _scores(r + 0.1, h - 0.03, 40)}  # fmt: skip

    baselines = {"mean": {"val": part(1.15, 0.02, 60), "test": part(1.14, 0.021, 60)},
                 "bias": {"val": part(1.04, 0.03, 60), "test": part(1.03, 0.031, 60)}}  # fmt: skip
    return {"val": part(rmse - 0.01, hr + 0.01, 60), "test": part(rmse, hr, 60),
            "baselines": baselines, "model": model, "n_items": 60, "notes": {}}  # fmt: skip


def write_models(repo: Path) -> dict[str, dict]:
    """Evaluation reports and dvclive learning curves of ncf and ss4rec."""
    from dvclive import Live

    reports = {
        "ncf": eval_report("ncf", 0.981, 0.074),
        "ss4rec": eval_report("ss4rec", 0.962, 0.112),
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


def write_checkpoint(repo: Path) -> str | None:
    """models/bias.pt: the real user+item bias baseline fitted on the split (needs the registry's
    recsys.models.baselines, branch train); returns why not when it is not there."""
    try:
        from recsys.batches import load_split
        from recsys.checkpoint import model_payload, save_checkpoint
        from recsys.evaluate import fit_baselines

        from recsys.config import BiasParams
    except ImportError as err:
        return f"recsys.models.baselines / recsys.checkpoint not on this branch yet ({err.name})"
    data = load_split(repo / "artifacts" / "split")
    model = fit_baselines(data, BiasParams())["bias"]
    payload = model_payload(model, model.config, data.spec, data.fingerprint)
    save_checkpoint(repo / "models" / "bias.pt", {**payload, "state_dict": model.state_dict()})
    return None


def build_project(repo: Path, days: int, fail_last: bool = False) -> dict:
    """Everything the dashboard reads after `days` daily runs (0: nothing built); when
    `fail_last`, the last day failed its quality gate, so it has no A/B look."""
    facts: dict = {"days": days}
    if days == 0:
        return facts
    facts["meta"] = write_data(repo)
    facts["quality"] = write_days(repo, days, fail_last)
    facts["abtest"] = write_abtest(repo, days - fail_last)
    facts["eval"] = write_models(repo)
    facts["no_checkpoint"] = write_checkpoint(repo)
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


def new_repo(path: Path) -> Path:
    """A git + DVC repository holding the project's pipeline files, one commit."""
    path.mkdir()
    for name in PIPELINE_FILES:
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, path / name)
    run(path, "git", "init", "-q", "-b", "main")
    dvc(path, "init", "-q")
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-q", "-m", "pipeline")
    return path


def save_experiments(repo: Path) -> None:
    """Two `dvc exp save` experiments that differ in one param and one metric."""
    with open(repo / "dvc.yaml", "a") as fh:
        fh.write(TOP_LEVEL_METRICS)
    run(repo, "git", "add", "dvc.yaml")
    run(repo, "git", "commit", "-q", "-m", "declare metrics")
    eval_path = repo / "metrics" / "eval" / "ncf.json"
    original_params, original_eval = (repo / "params.yaml").read_text(), eval_path.read_text()
    for name, val_frac, rmse in (("exp-small-val", "0.05", 0.99), ("exp-big-val", "0.2", 0.97)):
        params = original_params.replace("val_frac: 0.1 ", f"val_frac: {val_frac} ")
        (repo / "params.yaml").write_text(params)
        report = json.loads(original_eval)
        report["test"]["rmse"] = rmse
        eval_path.write_text(json.dumps(report))
        dvc(repo, "exp", "save", "-n", name, "-f", "--include-untracked", "metrics/eval/ncf.json")
    (repo / "params.yaml").write_text(original_params)
    eval_path.write_text(original_eval)


def make_project(path: Path, days: int, fail_last: bool = False, experiments: bool = False):
    """A new git + DVC repo at `path` holding everything of `days` daily runs; its facts."""
    import pytest

    with pytest.MonkeyPatch.context() as env:
        for key, value in GIT_ENV.items():
            env.setenv(key, value)
        repo = new_repo(path)
        facts = build_project(repo, days, fail_last)
        if experiments:
            save_experiments(repo)
        if days:  # the split above ran outside DVC: record its outputs in dvc.lock
            dvc(repo, "commit", "-f", "-q", "split")
    return repo, facts
