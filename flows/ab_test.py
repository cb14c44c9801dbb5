"""`ab-test` flow: the significance analysis for one day (`abtest@N`) or the cumulative report.

python -m flows.ab_test --repo . --day 5     # day 5's analysis (and what it depends on)
python -m flows.ab_test --repo .             # the cumulative report over every day
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task

from flows.daily_etl import verdict_markdown
from flows.tasks import (
    allow_repos,
    allowed_repo,
    limited,
    metrics_markdown,
    publish_markdown,
    read_json,
    read_stages,
    repro,
    require_stages,
    writer,
)
from recsys.errors import RecsysError, run_reporting_errors


@task
def publish_verdict(repo: str, metrics_path: str, key: str, title: str) -> str:
    """Markdown artifact of the decision in `metrics_path`; return the markdown."""
    doc = read_json(Path(repo) / metrics_path)
    if doc is None:
        raise RecsysError(f"{metrics_path} is missing after its stage ran")
    table = limited(metrics_markdown, repo)(repo, [metrics_path])
    markdown = verdict_markdown(doc, title) + "\n" + table
    publish_markdown(key, markdown, title)
    return markdown


@flow(name="ab-test")
def ab_test(repo: str = ".", day: int | None = None) -> str:
    """Run `abtest@<day>` (or the cumulative `report`) through DVC; publish the verdict."""
    repo = allowed_repo(repo)
    stage = f"abtest@{day}" if day is not None else "report"
    with writer(repo):
        require_stages([stage], limited(read_stages, repo)(repo))
        limited(repro, repo)(repo, stage)
    if day is None:
        return publish_verdict(
            repo, "metrics/summary.json", "ab-verdict-cumulative", "A/B verdict, all days"
        )
    return publish_verdict(
        repo,
        f"metrics/abtest/day_{day:02d}.json",
        f"ab-verdict-day-{day:02d}",
        f"A/B verdict, day {day}",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the flow once from the command line."""
    parser = argparse.ArgumentParser(prog="python -m flows.ab_test", description=ab_test.__doc__)
    parser.add_argument("--repo", default=".", help="the DVC repository (default: .)")
    parser.add_argument(
        "--day", type=int, help="one day's analysis (default: the cumulative report)"
    )
    args = parser.parse_args(argv)
    allow_repos(args.repo)

    def body() -> int:
        print(ab_test(repo=args.repo, day=args.day))
        return 0

    return run_reporting_errors("ab-test", body)


if __name__ == "__main__":
    raise SystemExit(main())
