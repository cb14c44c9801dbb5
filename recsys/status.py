"""`recsys status`: dataset, rows per split part, what is built and what is stale; with
`--verify`, whether every DVC-tracked output still has the content its md5 records.

Why a verify of its own: DVC trusts a file whose size and mtime are unchanged (its state
database), so bytes damaged in place pass `dvc status`, and `dvc checkout` copies a corrupted
cache object without complaint. `--verify` reads every output (and the cache copy behind it)
and compares md5s with dvc.lock / the .dvc files, naming each bad file and how to restore it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from recsys.config import load_params
from recsys.errors import RecsysError
from recsys.etl.quality import METRICS
from recsys.io import md5_file
from recsys.pipeline import StageState, stage_states

PARTS = ("train", "val", "test")


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


class OutputCheck(BaseModel):
    """One DVC-tracked file compared with its recorded md5 (`recsys status --verify`)."""

    path: str  # relative to the repo root; a file inside a directory output is named itself
    stage: str  # the stage (or .dvc file) that records it
    state: Literal["ok", "corrupted", "cache corrupted", "missing", "unverifiable"]
    detail: str = ""  # what differs
    restore: str = ""  # the commands that bring the recorded content back

    @property
    def damaged(self) -> bool:
        """Not intact: corrupted, cache corrupted or unverifiable (missing = not built)."""
        return self.state not in ("ok", "missing")


class Status(BaseModel):
    """What `recsys status` reports (also its `--json` schema)."""

    dataset: str
    ratings_file: str
    n_ratings: int | None
    split: dict | None
    stages: list[StageState]
    etl: EtlStatus | None = None
    next_step: str
    verified: list[OutputCheck] | None = None  # with --verify: every tracked file checked

    @property
    def damaged(self) -> list[OutputCheck]:
        """The verified files that are not intact (corrupted, cache corrupted, unverifiable)."""
        return [c for c in self.verified or [] if c.damaged]


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


def collect_status(root: Path = Path("."), verify: bool = False) -> Status:
    """Gather the status of the pipeline in `root`; `verify`: also check every output's md5."""
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
        verified=verify_outputs(root) if verify else None,
    )


def render_status(status: Status) -> str:
    """A human-readable table of the status; per-day stages are summarised as one row each."""
    rows = f"{status.n_ratings:,} ratings" if status.n_ratings is not None else "missing"
    lines = [f"dataset   {status.dataset}  ({status.ratings_file}: {rows})"]
    if status.split:
        parts = ", ".join(f"{k} {status.split[k]['n_ratings']:,}" for k in PARTS)
        lines.append(f"split     {parts}")
        lines.extend(render_accounting(status.split))
    lines += ["", f"{'stage':<16} {'built':<7} {'stale':<7} first change"]
    for group, stages in group_stages(status.stages).items():
        built, stale = sum(s.built for s in stages), [s for s in stages if s.stale]
        change = stale[0].changes[0] if stale and stale[0].changes else ""
        where = f"{stale[0].name}: " if change and len(stages) > 1 else ""
        counts = f"{f'{built}/{len(stages)}':<7} {len(stale):<7}"
        lines.append(f"{group:<16} {counts} {where}{change}".rstrip())
    if status.etl:
        lines.extend(["", *render_etl(status.etl)])
    if status.verified is not None:
        lines.extend(["", *render_verified(status.verified)])
    lines.append("")
    lines.append(f"next      {status.next_step}")
    return "\n".join(lines)


def render_accounting(split: dict) -> list[str]:
    """Per part: input rows = kept + quarantined + dropped by k-core (from meta.json)."""
    if "n_input" not in split["train"]:  # a split written before rows were accounted
        return ["          (rows not accounted: this split predates it; `dvc repro split`)"]
    lines = [f"{'rows':<9} {'part':<6} {'input':>9} = {'kept':>9} + {'quarantined':>11} + "
             "k-core dropped"]  # fmt: skip
    for name in PARTS:
        part = split[name]
        counts = (f"{part['n_input']:>9,} = {part['n_ratings']:>9,} + "
                  f"{part['n_quarantined']:>11,} + {part['n_dropped_by_k_core']:,}")  # fmt: skip
        reasons = ", ".join(f"{r} {n:,}" for r, n in part["quarantine_by_reason"].items())
        note = f"  ({reasons})" if reasons else ""
        if name == "test":
            note = "  (gated day by day: see etl)"
        lines.append(f"{'':<9} {name:<6} {counts}{note}")
    return lines


def render_verified(checks: list[OutputCheck]) -> list[str]:
    """`verify` lines: a count of intact files, then each damaged one and how to restore it."""
    ok = sum(c.state == "ok" for c in checks)
    missing = sum(c.state == "missing" for c in checks)
    bad = [c for c in checks if c.damaged]
    head = f"verify    {ok} of {len(checks)} tracked files match their recorded md5"
    if missing:
        head += f", {missing} not in the workspace (not built, or deleted)"
    lines = [head + (f"; {len(bad)} DAMAGED:" if bad else "; none damaged")]
    for check in bad:
        lines.append(f"  {check.state.upper()}: {check.path} ({check.stage}): {check.detail}")
        lines.append(f"      restore: {check.restore}")
    return lines


def _rel(path: str | Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _cache_state(cache: Path | None, md5: str) -> str:
    """'intact', 'corrupted' or 'absent': the cache object of `md5` against its name."""
    if cache is None or not cache.is_file():
        return "absent"
    return "intact" if md5_file(cache) == md5 else "corrupted"


def _restore(path: str, stage: str, cached: bool, cache_rel: str, cache_state: str) -> str:
    """The commands that bring `path` back, given the state of its cache copy."""
    rebuild = f"`dvc commit -f {stage}` after restoring the source" if stage.endswith(".dvc") else (
        f"`dvc repro -f {stage}`")  # fmt: skip
    if not cached:
        return f"`git checkout -- {path}` if git tracks it, else {rebuild}"
    if cache_state == "intact":  # `dvc checkout --force` trusts an unchanged mtime: remove first
        return f"`rm {path} && dvc checkout {path}` (the cache copy is intact)"
    where = "is corrupted too" if cache_state == "corrupted" else "is not in the cache"
    return (f"its cache copy {cache_rel} {where}: `rm -f {path} {cache_rel}`, then "
            f"`dvc pull {path}` (from the remote) or {rebuild}")  # fmt: skip


def _check_file(
    path: Path, md5: str, stage: str, cache: Path | None, root: Path, cached: bool
) -> OutputCheck:
    """Compare one workspace file (and its cache object) with the recorded md5."""
    rel = _rel(path, root)
    if not path.is_file():
        return OutputCheck(path=rel, stage=stage, state="missing")
    actual = md5_file(path)
    cache_state = _cache_state(cache, md5) if cached else "absent"
    cache_rel = _rel(cache, root) if cache else ""
    if actual != md5:
        return OutputCheck(
            path=rel, stage=stage, state="corrupted",
            detail=f"md5 {actual} but {stage} records {md5}",
            restore=_restore(rel, stage, cached, cache_rel, cache_state),
        )  # fmt: skip
    if cached and cache_state == "corrupted":
        return OutputCheck(
            path=rel, stage=stage, state="cache corrupted",
            detail=f"the file is intact, its cache copy {cache_rel} is not "
            "(`dvc checkout` would copy the bad bytes)",
            restore=f"`dvc commit -f {stage}` (saves the intact file over the bad copy)",
        )  # fmt: skip
    return OutputCheck(path=rel, stage=stage, state="ok")


def folder_listing(folder: Path) -> list[dict]:
    """A folder's files as DVC lists a directory output: {md5, relpath}, sorted by relpath."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return sorted(
        ({"md5": md5_file(p), "relpath": p.relative_to(folder).as_posix()} for p in files),
        key=lambda entry: entry["relpath"],
    )


def listing_md5(listing: list[dict]) -> str:
    """DVC's hash of a directory: md5 of its listing as sorted-keys JSON, plus '.dir'."""
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def _check_dir(out, stage: str, root: Path) -> list[OutputCheck]:
    """A directory output: its files against the recorded listing (the `.dir` cache object);
    without that listing, the whole folder against the recorded directory md5."""
    folder, md5 = Path(out.fs_path), out.hash_info.value
    rel = _rel(folder, root)
    if not folder.is_dir():
        return [OutputCheck(path=rel, stage=stage, state="missing")]
    found = folder_listing(folder)
    listing = Path(out.cache.oid_to_path(md5))
    if _cache_state(listing, md5.removesuffix(".dir")) == "intact":
        recorded = json.loads(listing.read_text())
    elif listing_md5(found) == md5:  # intact, and the listing is what we just read
        recorded = found
    else:
        return [OutputCheck(
            path=rel, stage=stage, state="corrupted",
            detail=f"its content differs from the md5 {stage} records, and the cache has no "
            "listing that names the file",
            restore=_restore(rel, stage, out.use_cache, _rel(listing, root), "absent"),
        )]  # fmt: skip
    checks = []
    for entry in recorded:
        cache = Path(out.cache.oid_to_path(entry["md5"])) if out.use_cache else None
        checks.append(_check_file(folder / entry["relpath"], entry["md5"], stage, cache, root,
                                  cached=out.use_cache))  # fmt: skip
    known = {entry["relpath"] for entry in recorded}
    for entry in found:
        if entry["relpath"] not in known:
            path = _rel(folder / entry["relpath"], root)
            checks.append(OutputCheck(
                path=path, stage=stage, state="corrupted",
                detail=f"not in the listing {stage} records for {rel}",
                restore=f"move it out of {rel}",
            ))  # fmt: skip
    return checks


def verify_outputs(root: Path = Path(".")) -> list[OutputCheck]:
    """Every output recorded in dvc.lock and the .dvc files, read and compared by md5."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(root).resolve()
    checks: list[OutputCheck] = []
    try:
        with Repo(str(root)) as repo:
            for stage in repo.index.stages:
                name = _rel(stage.path, root) if stage.is_data_source else stage.name
                for out in stage.outs:
                    md5 = out.hash_info.value if out.hash_info else None
                    if not md5:  # never built: nothing recorded to compare with
                        continue
                    if out.hash_info.isdir:
                        checks.extend(_check_dir(out, name, root))
                        continue
                    cache = Path(out.cache.oid_to_path(md5)) if out.use_cache else None
                    checks.append(_check_file(Path(out.fs_path), md5, name, cache, root,
                                              cached=out.use_cache))  # fmt: skip
    except DvcException as err:
        raise RecsysError(f"DVC could not read the pipeline in {root}: {err}") from None
    return checks


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
