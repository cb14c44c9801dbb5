"""`experiments` flow: queue a parameter grid with `dvc exp run --queue -S`, run it, compare.

Each grid entry becomes one `-S key=v1,v2,...`; DVC queues the cross product. The queue runs
with `dvc exp run --run-all` and the comparison table comes from `dvc.api.exp_show`.

    python -m flows.experiments --repo . --set ncf.lr=0.001,0.003 --set ncf.mlp_dim=16,32 \\
        --target evaluate@ncf
"""

from __future__ import annotations

import argparse
import re

import dvc.api
from prefect import flow, task

from flows.tasks import (
    RETRY_DELAYS_S,
    classified,
    log_event,
    publish_table,
    retry_if_transient,
)
from recsys.errors import RecsysError, run_reporting_errors
from recsys.pipeline import run_dvc

DEFAULT_GRID = {"ncf.lr": [0.001, 0.003], "ncf.mlp_dim": [16, 32]}
QUEUED = re.compile(r"Queued experiment '([^']+)'")
FIXED_COLUMNS = ["Experiment", "rev", "State"]


def set_params_args(grid: dict[str, list]) -> list[str]:
    """`-S key=v1,v2` arguments for DVC's grid syntax, one per parameter."""
    if not grid or any(not values for values in grid.values()):
        raise RecsysError("the grid needs at least one parameter with at least one value")
    return [
        arg for key, values in grid.items() for arg in ("-S", f"{key}={','.join(map(str, values))}")
    ]


@task(retries=2, retry_delay_seconds=RETRY_DELAYS_S[:2], retry_condition_fn=retry_if_transient)
def queue_grid(repo: str, grid: dict[str, list], targets: list[str]) -> list[str]:
    """Queue the grid's experiments; return their names."""
    try:
        out = run_dvc("exp", "run", "--queue", *set_params_args(grid), *targets, cwd=repo)
    except RecsysError as err:
        raise classified(err) from None
    names = QUEUED.findall(out)
    log_event("experiments_queued", names=names, grid=grid, targets=targets)
    return names


@task
def run_queue(repo: str, jobs: int) -> None:
    """`dvc exp run --run-all`: run every queued experiment, `jobs` at a time."""
    run_dvc("exp", "run", "--run-all", "--jobs", str(jobs), cwd=repo)


def comparison_rows(shown: list[dict], names: list[str], grid: dict[str, list]) -> list[dict]:
    """The named experiments with their grid params and every column whose value differs."""
    rows = [row for row in shown if row.get("Experiment") in names]
    varying = [
        key
        for key in (rows[0] if rows else {})
        if key not in FIXED_COLUMNS and key not in grid and key != "Created"
        and len({repr(row.get(key)) for row in rows}) > 1
        and not any(isinstance(row.get(key), str) and "/" in key for row in rows)  # dep hashes
    ]  # fmt: skip
    columns = FIXED_COLUMNS + list(grid) + varying
    return [{col: row.get(col) for col in columns} for row in rows]


@task
def publish_comparison(repo: str, names: list[str], grid: dict[str, list]) -> list[dict]:
    """Table artifact `experiments-comparison` from `dvc.api.exp_show`."""
    rows = comparison_rows(dvc.api.exp_show(repo=repo), names, grid)
    failed = [row["Experiment"] for row in rows if row["State"] != "Success"]
    publish_table("experiments-comparison", rows, f"{len(rows)} experiments over {', '.join(grid)}")
    missing = sorted(set(names) - {row["Experiment"] for row in rows})
    if failed or missing:
        raise RecsysError(f"experiments not successful: {failed + missing}")
    return rows


@flow(name="experiments")
def experiments(
    repo: str = ".",
    grid: dict[str, list] | None = None,
    targets: list[str] | None = None,
    jobs: int = 1,
) -> list[dict]:
    """Queue a grid of `dvc exp run` experiments, run them, publish their comparison."""
    grid = grid or DEFAULT_GRID
    names = queue_grid(repo, grid, targets or [])
    run_queue(repo, jobs)
    return publish_comparison(repo, names, grid)


def parse_set(text: str) -> tuple[str, list[str]]:
    """`key=v1,v2` -> (key, [v1, v2])."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected key=v1,v2,...")
    return key, values.split(",")


def main(argv: list[str] | None = None) -> int:
    """Run the flow once from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.experiments", description=experiments.__doc__
    )
    parser.add_argument("--repo", default=".", help="the DVC repository (default: .)")
    parser.add_argument(
        "--set", type=parse_set, action="append", help="a grid axis: key=v1,v2 (repeatable)"
    )
    parser.add_argument(
        "--target", action="append", default=[], help="stage(s) to run (default: all)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once")
    args = parser.parse_args(argv)
    grid = dict(args.set) if args.set else None

    def body() -> int:
        for row in experiments(repo=args.repo, grid=grid, targets=args.target, jobs=args.jobs):
            print(row)
        return 0

    return run_reporting_errors("experiments", body)


if __name__ == "__main__":
    raise SystemExit(main())
