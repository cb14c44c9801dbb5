"""`recsys etl`: run daily batches through DVC, in order, and show their quality.

Which days are done is DVC's own state (recsys.pipeline.stage_states: a `batch@N` stage is
done when all its outputs exist and `dvc status` reports no change), never a second tracker.
Day N runs as `dvc repro batch@N`: it rebuilds the split first if that is stale and touches
nothing else (no model depends on a batch). Two runs at once queue on DVC's repository lock.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pydantic import BaseModel

from recsys.errors import RecsysError
from recsys.etl.day import log_event, timing_path
from recsys.etl.quality import METRICS
from recsys.pipeline import StageState, repo_lock, run_dvc, stage_states

STAGE = re.compile(r"^batch@(\d+)$")


class DayState(BaseModel):
    """One day's stage: done (built and current) or not, and where its quality report is."""

    day: int
    done: bool
    quality_path: str


def day_states(root: Path = Path(".")) -> list[DayState]:
    """The `batch@N` stages in day order, from DVC's state."""
    return days_from_stages(stage_states(root, wait_for_lock=True))


def days_from_stages(stages: list[StageState]) -> list[DayState]:
    """Pick the `batch@N` stages out of all stages, in day order."""
    days = []
    for stage in stages:
        match = STAGE.match(stage.name)
        if match:
            quality = next(o for o in stage.outs if o.endswith(".json"))
            done = stage.built and not stage.stale
            days.append(DayState(day=int(match[1]), done=done, quality_path=quality))
    return sorted(days, key=lambda d: d.day)


def next_day(days: list[DayState]) -> int | None:
    """The first day not yet done, or None when every day is."""
    return next((d.day for d in days if not d.done), None)


def read_quality(root: Path, day: DayState) -> dict | None:
    """A day's quality report with its timing merged in, or None when it has none."""
    path = root / day.quality_path
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    timing = timing_path(path)
    if timing.is_file():
        report["timing"] = json.loads(timing.read_text())
    return report


def _failure_reason(err: RecsysError, report: dict | None) -> str:
    """The day's own failed checks when it wrote a report, else DVC's reason."""
    if report is not None and not report["passed"]:
        return f"day {report['day']} failed quality: {'; '.join(report['failed_checks'])}"
    return str(err)


def run_day(day: int, root: Path = Path(".")) -> dict:
    """Run `dvc repro batch@<day>` (earlier days must be done); return its quality report."""
    with repo_lock(root, "recsys etl"):
        return _run_day_locked(day, root)


def _run_day_locked(day: int, root: Path) -> dict:
    days = {d.day: d for d in day_states(root)}
    if day not in days:
        raise RecsysError(f"--day {day}: no stage batch@{day} (days 1..{len(days)})")
    pending = [d for d in range(1, day) if not days[d].done]
    if pending:
        raise RecsysError(f"day {day} needs day {pending[0]} first: run `recsys etl --next`")
    started = time.perf_counter()
    try:
        run_dvc("--wait-for-lock", "repro", f"batch@{day}", cwd=root)
    except RecsysError as err:
        report = read_quality(root, days[day])
        if report is not None:
            print(render_quality(report))
        raise RecsysError(_failure_reason(err, report)) from None
    report = read_quality(root, days[day])
    if report is None:
        raise RecsysError(f"day {day}: DVC ran but {days[day].quality_path} is missing")
    seconds = round(time.perf_counter() - started, 3)  # wall time, DVC included
    log_event("day_done", day=day, rows=report["rows"], duration_s=seconds)
    return report


def run_next(count: int, root: Path = Path(".")) -> list[dict]:
    """Run the next `count` days not yet done, one after another; stop at the first failure."""
    reports = []
    for _ in range(count):
        day = next_day(day_states(root))
        if day is None:
            break
        report = run_day(day, root)
        print(render_quality(report))
        reports.append(report)
    return reports


def render_quality(report: dict) -> str:
    """A small table of one day's quality: scores, counts, reasons, timing."""
    verdict = "PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failed_checks"])
    lines = [
        f"day {report['day']}/{report['n_days']}  rows {report['rows']:,}  "
        f"accepted {report['accepted']:,}  quarantined {report['quarantined']:,}  {verdict}",
        f"  window  {report['window']['first_timestamp']} .. {report['window']['last_timestamp']}"
        " (epoch s)",
    ]
    for metric in METRICS:
        lines.append(f"  {metric:<13} {report[metric]:8.4f}   (min {report['min_quality']})")
    reasons = {k: v for k, v in report["quarantine_by_reason"].items() if v}
    if reasons:
        lines.append("  quarantined  " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    lines.append(
        f"  new ids      users {report['new_users']} ({report['new_user_rows']} rows), "
        f"items {report['new_items']} ({report['new_item_rows']} rows)"
    )
    if "timing" in report:
        timing = report["timing"]
        lines.append(f"  time         {timing['duration_s']} s, {timing['rows_per_s']} rows/s")
    return "\n".join(lines)
