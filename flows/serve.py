"""Serve the deployments against PREFECT_API_URL: `daily-etl/daily` on its cron, the rest on demand.

    prefect server start          # terminal 1
    python -m flows.serve         # terminal 2 (runs flows in this process, in --repo)
    prefect deployment run 'daily-etl/daily'

Flow runs accept only `--repo` as their `repo` parameter (any other path is refused before
DVC runs). Serving also creates the `daily-etl` global concurrency limit, once.

`prefect deploy --all --prefect-file configs/prefect.yaml` registers the same deployments on a
work pool instead, for workers on other hosts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.ab_test import ab_test
from flows.daily_etl import DAILY_LIMIT, daily_etl, ensure_limit
from flows.experiments import experiments
from flows.tasks import allow_repos
from flows.training import training

DAILY_CRON = "0 2 * * *"  # 02:00 every day
DAILY_TIMEZONE = "UTC"


def deployments(repo: str) -> list:
    """The four deployments; every flow runs in `repo`."""
    params = {"repo": repo}
    # A second daily run while one is active waits in the queue (the flow's global limit
    # `daily-etl` also serialises runs started any other way).
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    return [
        daily_etl.to_deployment(
            name="daily",
            schedules=[Cron(DAILY_CRON, timezone=DAILY_TIMEZONE)],
            concurrency_limit=one_at_a_time,
            parameters=params,
            tags=["etl", DAILY_LIMIT],
            description="Next unprocessed day: batch, A/B, report through DVC (02:00 UTC).",
        ),
        training.to_deployment(name="on-demand", parameters=params, tags=["training"]),
        ab_test.to_deployment(name="on-demand", parameters=params, tags=["abtest"]),
        experiments.to_deployment(name="on-demand", parameters=params, tags=["experiments"]),
    ]


def main(argv: list[str] | None = None) -> int:
    """Serve the deployments until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--repo",
        default=".",
        help="the DVC repository the flows run in, the only one they accept (default: .)",
    )
    args = parser.parse_args(argv)
    repo = str(Path(args.repo).resolve())
    allow_repos(repo)  # inherited by the flow runs this process starts
    ensure_limit()
    serve(*deployments(repo))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
