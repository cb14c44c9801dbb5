"""`training` flow: `dvc repro train@<model>` then `evaluate@<model>` for each model; metrics table.

DVC decides what actually runs: a model whose code, params and split are unchanged is skipped.

    python -m flows.training --repo . --models ncf ss4rec
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task

from flows.tasks import (
    allow_repos,
    allowed_repo,
    limited,
    publish_table,
    read_json,
    read_stages,
    repro,
    require_stages,
    writer,
)
from recsys.errors import run_reporting_errors

DEFAULT_MODELS = ["ncf", "ss4rec"]
PARTS = ("val", "test")  # splits reported by evaluate@<model>


def metrics_row(model: str, report: dict) -> dict:
    """One table row: the model's scalar metrics per split (`test/rmse`, `val/ndcg@10`, ...)."""
    row: dict = {"model": model}
    for part in PARTS:
        for name, value in report.get(part, {}).items():
            if isinstance(value, int | float):
                row[f"{part}/{name}"] = round(float(value), 4)
    return row


@task
def publish_metrics(repo: str, models: list[str]) -> list[dict]:
    """Table artifact `training-metrics` from `metrics/eval/<model>.json`."""
    rows = []
    for model in models:
        report = read_json(Path(repo) / f"metrics/eval/{model}.json")
        if report is not None:
            rows.append(metrics_row(model, report))
    publish_table("training-metrics", rows, f"Evaluation of {', '.join(models)} (DVC metrics)")
    return rows


@flow(name="training")
def training(repo: str = ".", models: list[str] | None = None, evaluate: bool = True) -> list[dict]:
    """Retrain (and evaluate) each model through DVC; publish the metrics table."""
    repo = allowed_repo(repo)
    models = models or DEFAULT_MODELS
    steps = ["train", "evaluate"] if evaluate else ["train"]
    wanted = [f"{step}@{model}" for model in models for step in steps]
    with writer(repo):
        require_stages(wanted, limited(read_stages, repo)(repo))
        for stage in wanted:
            limited(repro, repo)(repo, stage)
    return publish_metrics(repo, models) if evaluate else []


def main(argv: list[str] | None = None) -> int:
    """Run the flow once from the command line."""
    parser = argparse.ArgumentParser(prog="python -m flows.training", description=training.__doc__)
    parser.add_argument("--repo", default=".", help="the DVC repository (default: .)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="models to retrain")
    parser.add_argument("--no-evaluate", action="store_true", help="train only")
    args = parser.parse_args(argv)
    allow_repos(args.repo)

    def body() -> int:
        for row in training(repo=args.repo, models=args.models, evaluate=not args.no_evaluate):
            print(row)
        return 0

    return run_reporting_errors("training", body)


if __name__ == "__main__":
    raise SystemExit(main())
