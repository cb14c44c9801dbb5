"""`daily-etl` flow: the next day not yet up to date, through its DVC stages, then published.

Which day is next comes from DVC's own state (recsys.etl.run over `dvc status`): the first of days
1..N whose stages (`batch@N`, and `abtest@N` where dvc.yaml defines it) DVC does not report up
to date. So a retried run re-does only what DVC says is missing (a finished `batch@N` is
skipped by DVC, an unfinished `abtest@N` runs), and a duplicated run waits on the
`daily-etl` global concurrency limit (created once by `python -m flows.serve` or this command
line), then sees the day as done and takes the next one. With `push`, the day's DVC outputs are
`dvc push`ed and its commit `git push`ed, so another clone continues from the next day.

    python -m flows.daily_etl --repo .          # one run without a server (ephemeral API)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from flows.tasks import (
    RETRY_DELAYS_S,
    QualityGateFailed,
    TransientError,
    allow_repos,
    allowed_repo,
    classified,
    dvc_limit,
    limited,
    limits,
    log_event,
    metrics_markdown,
    publish_markdown,
    publish_table,
    read_json,
    read_stages,
    repro,
    retry_if_transient,
    stage_names,
    writer,
)
from recsys.errors import RecsysError, run_reporting_errors
from recsys.etl.quality import METRICS
from recsys.etl.run import days_from_stages, next_day, read_quality, render_quality
from recsys.pipeline import StageState, run_dvc

DAILY_LIMIT = "daily-etl"  # global concurrency limit (1 slot): daily runs never overlap


def ensure_limit(name: str = DAILY_LIMIT, slots: int = 1) -> None:
    """Create the global concurrency limit on the Prefect API if it does not exist yet (once,
    by `python -m flows.serve` or the command line; never per run)."""
    # ObjectAlreadyExists: a run starting at the same moment created it first
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, slots)


def pending_day(stages: list[StageState]) -> int | None:
    """The first day whose `batch@N` (or defined `abtest@N`) DVC does not report up to date."""
    by_name = {stage.name: stage for stage in stages}

    def current(name: str) -> bool:
        stage = by_name.get(name)
        return stage is None or (stage.built and not stage.stale)

    days = days_from_stages(stages)
    return next_day(
        [d.model_copy(update={"done": d.done and current(f"abtest@{d.day}")}) for d in days]
    )


def day_plan(day: int, stages: list[StageState]) -> tuple[list[str], dict[str, str]]:
    """The day's stages to run in order, and those skipped with the reason why.

    `report` reads every day's A/B result (it depends on all of metrics/abtest) and `quality`
    every day's quality report, so they run with the last day; `dvc repro report` on an
    earlier day would run every later day too.
    """
    names = stage_names(stages)
    last_day = max(d.day for d in days_from_stages(stages))
    run, skipped = [], {}
    for stage in [f"batch@{day}", f"abtest@{day}", "quality", "report"]:
        if stage not in names:
            skipped[stage] = "not defined in dvc.yaml"
        elif stage in ("quality", "report") and day < last_day:
            skipped[stage] = f"summarises all {last_day} days: runs with day {last_day}"
        else:
            run.append(stage)
    return run, skipped


@task
def quality_gate(repo: str, day: int, stages: list[StageState]) -> dict | None:
    """Publish the day's quality table; fail (no retry) with the reason when the gate failed."""
    state = next(d for d in days_from_stages(stages) if d.day == day)
    report = read_quality(Path(repo), state)
    if report is None:  # the batch stage did not get as far as checking (e.g. split failed)
        return None
    get_run_logger().info("quality of day %d:\n%s", day, render_quality(report))
    rows = [
        {"check": m, "score": round(report[m], 4), "min": report["min_quality"]} for m in METRICS
    ]
    rows.append(
        {"check": "rows accepted / total", "score": report["accepted"], "min": report["rows"]}
    )
    verdict = "passed" if report["passed"] else "FAILED: " + "; ".join(report["failed_checks"])
    publish_table(f"quality-day-{day:02d}", rows, f"Data quality of day {day}: {verdict}")
    if not report["passed"]:
        raise QualityGateFailed(f"day {day} failed quality: {'; '.join(report['failed_checks'])}")
    return report


def decision_sentence(doc: dict) -> str:
    """The one-sentence verdict of an A/B metrics document."""
    decision = doc["decision"]
    return decision if isinstance(decision, str) else decision["sentence"]


def verdict_markdown(doc: dict, title: str) -> str:
    """Markdown of an A/B decision (`decision` is the sentence or a dict holding it)."""
    decision = doc["decision"]
    if isinstance(decision, str):
        return f"## {title}\n\n{decision}\n"
    lines = [f"## {title}", "", decision_sentence(doc), ""]
    groups = [("B better", "b_better"), ("A better", "a_better")]
    groups.append(("no significant difference", "no_significant_difference"))
    for label, key in groups:
        lines.append(f"- {label}: {', '.join(decision.get(key) or []) or 'none'}")
    return "\n".join(lines) + "\n"


@task
def publish_day(repo: str, day: int, ran: list[str]) -> str | None:
    """Markdown artifacts: the A/B verdict (when the day has one) and the day's DVC metrics."""
    root = Path(repo)
    verdict = read_json(root / f"metrics/abtest/day_{day:02d}.json")
    sentence = None
    if verdict is not None:
        publish_markdown(
            f"ab-verdict-day-{day:02d}",
            verdict_markdown(verdict, f"A/B verdict, day {day}"),
            f"A/B decision after day {day}",
        )
        sentence = decision_sentence(verdict)
    targets = [
        f"metrics/quality/day_{day:02d}.json",
        f"metrics/abtest/day_{day:02d}.json",
        "metrics/summary.json",
    ]
    body = limited(metrics_markdown, repo)(repo, targets)
    publish_markdown(
        "dvc-metrics-daily",
        f"## DVC metrics after day {day}\n\nStages run: {', '.join(ran)}\n\n{body}",
        f"DVC metrics of day {day}",
    )
    return sentence


def _git(repo: str, *args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # fail, never wait for a password
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=timeout_s
    )


@task(retries=2, retry_delay_seconds=RETRY_DELAYS_S[:2], retry_condition_fn=retry_if_transient)
def commit_day(repo: str, day: int) -> bool:
    """Commit dvc.lock, DVC's .gitignore files and git-tracked metrics; False if no change."""
    pathspecs = ["dvc.lock", ":(glob)**/.gitignore"] + (
        ["metrics"] if (Path(repo) / "metrics").is_dir() else []
    )
    added = _git(repo, "add", "--", *pathspecs)
    if added.returncode != 0:
        raise RecsysError(f"git add failed: {added.stderr.strip()}")
    if _git(repo, "diff", "--cached", "--quiet").returncode == 0:
        return False
    done = _git(repo, "commit", "-q", "-m", f"daily-etl: day {day}")
    if done.returncode != 0:
        raise TransientError(f"git commit failed: {done.stderr.strip()}")
    return True


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_S, retry_condition_fn=retry_if_transient)
def dvc_push(repo: str) -> None:
    """`dvc push` to the default remote; a failure (network, remote busy) is retried."""
    try:
        run_dvc("push", cwd=repo, timeout_s=dvc_limit())
    except RecsysError as err:
        raise TransientError(str(classified(err))) from None


@task(retries=2, retry_delay_seconds=RETRY_DELAYS_S[:2], retry_condition_fn=retry_if_transient)
def git_push(repo: str) -> str:
    """`git push` the current branch to its remote (default origin); return what was pushed.

    A rejection (another clone pushed first) is not retried: this clone must pull first.
    """
    branch = _git(repo, "symbolic-ref", "--short", "HEAD").stdout.strip()
    if not branch:
        raise RecsysError(f"{repo}: HEAD is not on a branch; check out the branch to push")
    remote = _git(repo, "config", f"branch.{branch}.remote").stdout.strip() or "origin"
    done = _git(repo, "push", remote, f"HEAD:refs/heads/{branch}", timeout_s=dvc_limit())
    if done.returncode == 0:
        log_event("git_pushed", remote=remote, branch=branch)
        return f"{remote}/{branch}"
    reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
    if "rejected" in done.stderr:
        raise RecsysError(
            f"git push to {remote} {branch} was rejected ({reason}): another clone pushed "
            "first; this clone's commit stays local. Run `git pull --rebase` and `dvc pull`"
        )
    raise TransientError(f"git push to {remote} {branch} failed: {reason}")


def run_day_stages(repo: str, day: int, stages: list[StageState]) -> dict:
    """Batch (with its quality gate), A/B and report for `day` (see day_plan for skips)."""
    defined, skipped = day_plan(day, stages)
    for stage, reason in skipped.items():
        log_event("stage_skipped", day=day, stage=stage, reason=reason)
    run_stage = limited(repro, repo)
    batch = run_stage(repo, f"batch@{day}", return_state=True)
    quality = quality_gate(repo, day, stages)  # raises with the gate's reason
    results = [batch.result()]  # raises a failure that was not the quality gate
    if quality is None:
        raise RecsysError(f"day {day}: `dvc repro batch@{day}` wrote no quality report")
    results += [run_stage(repo, stage) for stage in defined[1:]]
    verdict = publish_day(repo, day, [r["stage"] for r in results])
    return {
        "day": day,
        "stages": results,
        "skipped": skipped,
        "quality_passed": quality["passed"],
        "verdict": verdict,
    }


@flow(name="daily-etl")
def daily_etl(
    repo: str = ".", day: int | None = None, commit: bool = False, push: bool = False
) -> dict:
    """Run the next unprocessed day (or `day`) through DVC; optionally commit and push
    (`dvc push`, then `git push` of the day's commit)."""
    repo = allowed_repo(repo)
    # The Prefect limit serialises daily runs anywhere; the repository lock also every other
    # flow and `recsys etl` in this clone.
    with daily_slot(limits(repo).lock_timeout_s), writer(repo):
        stages = limited(read_stages, repo)(repo)
        pending = pending_day(stages)
        if day is None and pending is None:
            n_days = len(days_from_stages(stages))
            log_event("all_days_done", days=n_days)
            return {"day": None, "message": f"all {n_days} days are up to date; nothing to do"}
        if day is not None and pending is not None and day > pending:
            raise RecsysError(f"day {day} needs day {pending} first")
        result = run_day_stages(repo, day or pending, stages)
        if commit:
            result["committed"] = limited(commit_day, repo)(repo, result["day"])
        if push:
            limited(dvc_push, repo)(repo)
            if commit:  # after the data: a clone that pulls this commit finds its outputs
                result["pushed"] = limited(git_push, repo)(repo)
    return result


@contextlib.contextmanager
def daily_slot(timeout_s: float):
    """The one slot of the `daily-etl` global concurrency limit, waiting up to `timeout_s`."""
    try:
        with concurrency(DAILY_LIMIT, occupy=1, timeout_seconds=timeout_s, strict=True):
            yield
    except ConcurrencySlotAcquisitionError as err:
        raise RecsysError(
            f"{err}: start the flows with `python -m flows.serve` (it creates the limit), or "
            f"run `prefect global-concurrency-limit create {DAILY_LIMIT} --limit 1`"
        ) from None


def run_days(repo: str, *, simulate: int, through: int | None, **options) -> list[dict]:
    """Run the flow `simulate` times, or until day `through` is done; stop once all days are."""
    results: list[dict] = []
    while through is not None or len(results) < simulate:
        results.append(daily_etl(repo=repo, **options))
        day = results[-1]["day"]
        if day is None or (through is not None and day >= through):
            break
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the flow from the command line (an ephemeral Prefect API unless PREFECT_API_URL)."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.daily_etl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repo", default=".", help="the DVC repository (default: .)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--day", type=int, help="exactly this day (re-run, or the next pending)")
    which.add_argument("--through", type=int, help="every pending day up to and including this")
    which.add_argument("--simulate", type=int, default=1, help="this many pending days (default 1)")
    parser.add_argument("--commit", action="store_true", help="commit dvc.lock and metrics to git")
    parser.add_argument(
        "--push", action="store_true", help="dvc push, then git push the commit (with --commit)"
    )
    args = parser.parse_args(argv)
    options = {"commit": args.commit, "push": args.push}
    allow_repos(args.repo)

    def body() -> int:
        ensure_limit()
        if args.day is not None:
            results = [daily_etl(repo=args.repo, day=args.day, **options)]
        else:
            results = run_days(args.repo, simulate=args.simulate, through=args.through, **options)
        for result in results:
            print(result.get("message") or f"day {result['day']}: {result}")
        return 0

    return run_reporting_errors("daily-etl", body)


if __name__ == "__main__":
    raise SystemExit(main())
