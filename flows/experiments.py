"""`experiments` flow: queue a parameter grid with `dvc exp run --queue -S`, run it, compare.

Each grid entry becomes one `-S key=v1,v2,...`; DVC queues the cross product. The queue runs
with `dvc exp run --run-all` and the comparison table comes from `dvc.api.exp_show`. The
logic lives in `recsys.experiments` (also behind `recsys experiments grid FILE`); these tasks
add retries, logs and the Prefect table artifact.

    python -m flows.experiments --repo . --set ncf.lr=0.001,0.003 --set ncf.mlp_dim=16,32 \\
        --target evaluate@ncf
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger, task

from flows.tasks import (
    RETRY_DELAYS_S,
    STAGE_TASKS,
    allow_repos,
    allowed_repo,
    classified,
    limited,
    log_event,
    publish_table,
    retry_if_transient,
    writer,
)
from recsys import experiments as lib
from recsys.errors import RecsysError, run_reporting_errors

DEFAULT_GRID = {"ncf.lr": [0.001, 0.003], "ncf.mlp_dim": [16, 32]}


@task(retries=2, retry_delay_seconds=RETRY_DELAYS_S[:2], retry_condition_fn=retry_if_transient)
def queue_grid(repo: str, grid: dict[str, list], targets: list[str]) -> list[str]:
    """Queue the grid's experiments; return their names."""
    try:
        names = lib.queue_grid(repo, grid, targets)
    except RecsysError as err:
        raise classified(err) from None
    log_event("experiments_queued", names=names, grid=grid, targets=targets)
    return names


@task(tags=[STAGE_TASKS])
def run_queue(repo: str, jobs: int) -> None:
    """`dvc exp run --run-all`: run every queued experiment, `jobs` at a time, streaming what
    DVC and the stages print into the run's log (stopped at the task's timeout_seconds)."""
    try:
        lib.run_queue(repo, jobs, echo=get_run_logger().info)
    except RecsysError as err:
        raise classified(err, echoed=True) from None


@task
def publish_comparison(repo: str, names: list[str], grid: dict[str, list]) -> list[dict]:
    """Table artifact `experiments-comparison` from `dvc.api.exp_show`."""
    rows = lib.show_experiments(repo, names, grid)
    publish_table("experiments-comparison", rows, f"{len(rows)} experiments over {', '.join(grid)}")
    failed = lib.unsuccessful(rows, names)
    if failed:
        raise RecsysError(f"experiments not successful: {failed}")
    return rows


@flow(name="experiments")
def experiments(
    repo: str = ".",
    grid: dict[str, list] | None = None,
    targets: list[str] | None = None,
    jobs: int = 1,
) -> list[dict]:
    """Queue a grid of `dvc exp run` experiments, run them, publish their comparison."""
    repo = allowed_repo(repo)
    grid = grid or DEFAULT_GRID
    with writer(repo):
        names = limited(queue_grid, repo)(repo, grid, targets or [])
        limited(run_queue, repo)(repo, jobs)
        return limited(publish_comparison, repo)(repo, names, grid)


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
    allow_repos(args.repo)

    def body() -> int:
        for row in experiments(repo=args.repo, grid=grid, targets=args.target, jobs=args.jobs):
            print(row)
        return 0

    return run_reporting_errors("experiments", body)


if __name__ == "__main__":
    raise SystemExit(main())
