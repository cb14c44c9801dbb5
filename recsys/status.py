"""`recsys status`: dataset, rows, what is built and what is stale."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from recsys.config import load_params
from recsys.etl.quality import METRICS
from recsys.pipeline import StageState, stage_states


class EtlStatus(BaseModel):
    """Daily batches: how many days are done, how much of the test split they cover."""

    days_done: int
    n_days: int
    records_processed: int  # rows of the done days (accepted + quarantined)
    records_accepted: int
    records_quarantined: int
    coverage_pct: float | None  # records processed / test rows, None before the split
    next_day: int | None
    last_day: int | None  # the last day done, or the next one if its quality gate failed
    last_quality: dict | None  # that day's scores and verdict


class Status(BaseModel):
    """What `recsys status` reports (also its `--json` schema)."""

    dataset: str
    ratings_file: str
    n_ratings: int | None
    split: dict | None
    stages: list[StageState]
    etl: EtlStatus | None = None
    next_step: str


def count_rows(csv_path: Path) -> int | None:
    """Data rows of a CSV (lines minus the header), or None when the file is missing."""
    if not csv_path.is_file():
        return None
    with open(csv_path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1


def next_step(n_ratings: int | None, dataset: str, stages: list[StageState]) -> str:
    """The command that moves the pipeline forward from here."""
    if n_ratings is None:
        return f"recsys fetch --dataset {dataset}   (or `recsys synth` for synthetic data)"
    if any(s.stale or not s.built for s in stages):
        return "dvc repro"
    return "nothing: the pipeline is up to date"


def last_processed_day(days: list, reports: dict[int, dict | None]) -> int | None:
    """The highest day DVC reports done, or the day after it when that day's gate failed."""
    from recsys.etl.run import next_day

    last = max((d.day for d in days if d.done and reports[d.day]), default=None)
    upcoming = next_day(days)
    report = reports.get(upcoming) if upcoming else None
    if report and not report["passed"]:
        return upcoming
    return last


def etl_status(root: Path, stages: list[StageState], split: dict | None) -> EtlStatus | None:
    """Days done (DVC's state), records and coverage from their quality reports."""
    from recsys.etl.run import days_from_stages, next_day, read_quality

    days = days_from_stages(stages)
    if not days:
        return None
    reports = {d.day: read_quality(root, d) for d in days}
    done = [reports[d.day] for d in days if d.done and reports[d.day]]
    processed = sum(r["rows"] for r in done)
    test_rows = split["test"]["n_ratings"] if split else None
    last_day = last_processed_day(days, reports)
    last = reports[last_day] if last_day else None
    return EtlStatus(
        days_done=sum(d.done for d in days),
        n_days=len(days),
        records_processed=processed,
        records_accepted=sum(r["accepted"] for r in done),
        records_quarantined=sum(r["quarantined"] for r in done),
        coverage_pct=round(100 * processed / test_rows, 2) if test_rows else None,
        next_day=next_day(days),
        last_day=last_day,
        last_quality={k: last[k] for k in (*METRICS, "passed", "failed_checks")} if last else None,
    )


def collect_status(root: Path = Path(".")) -> Status:
    """Gather the status of the pipeline in `root`."""
    dataset = load_params(root / "params.yaml").data.dataset
    ratings = root / "data" / dataset / "ratings.csv"
    meta_path = root / "artifacts" / "split" / "meta.json"
    split = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    n_ratings = count_rows(ratings)
    stages = [s for s in stage_states(root) if not s.name.endswith(".dvc")]
    return Status(
        dataset=dataset,
        ratings_file=str(ratings),
        n_ratings=n_ratings,
        split=split,
        stages=stages,
        etl=etl_status(root, stages, split),
        next_step=next_step(n_ratings, dataset, stages),
    )


def render_status(status: Status) -> str:
    """A human-readable table of the status; per-day stages are summarised as one row each."""
    rows = f"{status.n_ratings:,} ratings" if status.n_ratings is not None else "missing"
    lines = [f"dataset   {status.dataset}  ({status.ratings_file}: {rows})"]
    if status.split:
        parts = ", ".join(f"{k} {status.split[k]['n_ratings']:,}" for k in ("train", "val", "test"))
        lines.append(f"split     {parts}")
    lines += ["", f"{'stage':<16} {'built':<7} {'stale':<7} first change"]
    for group, stages in group_stages(status.stages).items():
        built, stale = sum(s.built for s in stages), [s for s in stages if s.stale]
        change = stale[0].changes[0] if stale and stale[0].changes else ""
        where = f"{stale[0].name}: " if change and len(stages) > 1 else ""
        counts = f"{f'{built}/{len(stages)}':<7} {len(stale):<7}"
        lines.append(f"{group:<16} {counts} {where}{change}".rstrip())
    if status.etl:
        lines.extend(["", *render_etl(status.etl)])
    lines.append("")
    lines.append(f"next      {status.next_step}")
    return "\n".join(lines)


def group_stages(stages: list[StageState]) -> dict[str, list[StageState]]:
    """Stages by name; the per-day instances (`batch@1`, `batch@2`, …) under `batch@1..`."""
    groups: dict[str, list[StageState]] = {}
    for stage in stages:
        name, _, key = stage.name.partition("@")
        if key.isdigit():
            groups.setdefault(f"{name}@1..", []).append(stage)
        else:
            groups.setdefault(stage.name, []).append(stage)
    return groups


def render_etl(etl: EtlStatus) -> list[str]:
    """Lines for the daily batches: days done, records, coverage, last day's quality."""
    coverage = f"{etl.coverage_pct:.1f} %" if etl.coverage_pct is not None else "-"
    lines = [
        f"etl       days done {etl.days_done}/{etl.n_days}, records processed "
        f"{etl.records_processed:,} ({etl.records_quarantined:,} quarantined), "
        f"coverage {coverage} of test"
    ]
    if etl.last_quality:
        q = etl.last_quality
        verdict = "passed" if q["passed"] else "FAILED: " + "; ".join(q["failed_checks"])
        scores = ", ".join(f"{m} {q[m]:.3f}" for m in METRICS)
        lines.append(f"          last day {etl.last_day}: {scores} ({verdict})")
    return lines
