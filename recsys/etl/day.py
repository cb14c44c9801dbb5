"""`batch@N` stage: day N of the test split, quality-gated, rejected rows quarantined.

Day boundaries: the test split (sorted by timestamp, user, item) is cut BY POSITION into
`n_days` slices; with n rows, every day has n // n_days rows and the first n % n_days days
one more, so 20 days of exactly 5 % each when n is divisible by 20. MovieLens "days" are
these equal slices, not calendar days. Slicing by position may split a group of events that
share one second between two days; a day's time window is therefore closed at both ends:
[timestamp of its first row, timestamp of the next day's first row] (the last day ends at
its own last row), and neighbouring windows may share their boundary second.

A day's slice = its accepted rows (`day_NN.parquet`) + its quarantined rows (with a reason
each), so the 20 days together hold every test row exactly once. A day whose quality is
below `etl.min_quality` writes its quarantine and quality report, no day file, and exits 1.

    python -m recsys.etl.day --day 3 --split artifacts/split --out batches/day_03.parquet \\
        --quarantine batches/quarantine/day_03.parquet --quality metrics/quality/day_03.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.config import EtlParams, load_params
from recsys.data.canonical import RATINGS_COLUMNS, RATINGS_DTYPES
from recsys.errors import RecsysError, run_reporting_errors
from recsys.etl.quality import METRICS, RowRules, quality_scores, reason_counts, row_reasons
from recsys.io import write_json, write_parquet


def log_event(event: str, **fields) -> None:
    """One structured log line (JSON) on stderr per event."""
    print(json.dumps({"event": event, **fields}, sort_keys=True), file=sys.stderr, flush=True)


def day_bounds(n_rows: int, n_days: int) -> np.ndarray:
    """Start positions of the days plus the end: (n_days + 1,); the first n % n_days get +1."""
    if n_rows < n_days:
        raise RecsysError(f"the test split has {n_rows} rows, fewer than etl.n_days={n_days}")
    sizes = np.full(n_days, n_rows // n_days)
    sizes[: n_rows % n_days] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def day_window(timestamps: np.ndarray, bounds: np.ndarray, day: int) -> tuple[int, int]:
    """Inclusive [first, last] epoch seconds of `day` (1-based); see the module docstring."""
    start, stop = bounds[day - 1], bounds[day]
    end = timestamps[stop] if stop < len(timestamps) else np.nanmax(timestamps[start:stop])
    return int(timestamps[start]), int(end)


def split_cutoff(split_dir: Path) -> int:
    """The last train/val timestamp (epoch s): no test event can be earlier."""
    meta = json.loads((split_dir / "meta.json").read_text())
    return max(meta["train"]["last_timestamp"], meta["val"]["last_timestamp"])


def _earlier_extremes(earlier: pd.DataFrame, rows: pd.DataFrame, key: str, how: str) -> pd.Series:
    """key -> min or max timestamp of the earlier days' rows, for the keys in `rows`."""
    earlier = earlier[earlier[key].isin(rows[key].dropna().unique())]
    return earlier.groupby(key)["timestamp"].agg(how)


def day_rules(params: EtlParams, split_dir: Path, test: pd.DataFrame, day: int) -> RowRules:
    """The rules for one day: scale, now, its window, and item/user history before it.

    Train and val all end at the split cut-off, so against them every check reduces to
    "not before the cut-off", which the window's lower bound carries; the earlier days'
    rows give each item's first appearance and each user's latest event exactly.
    """
    bounds = day_bounds(len(test), params.n_days)
    start, stop = bounds[day - 1], bounds[day]
    rows, earlier = test.iloc[start:stop], test.iloc[:start]
    first, last = day_window(test["timestamp"].to_numpy(dtype=float), bounds, day)
    return RowRules(
        rating_min=params.rating_min,
        rating_max=params.rating_max,
        rating_step=params.rating_step,
        now=int(time.time()),
        window=(max(first, split_cutoff(split_dir)), last),
        item_first_seen=_earlier_extremes(earlier, rows, "item_id", "min"),
        user_last_seen=_earlier_extremes(earlier, rows, "user_id", "max"),
    )


def schema_problem(split_dir: Path) -> str | None:
    """Why the test split's schema differs from the reference (train), or None."""
    reference = pq.read_schema(split_dir / "train.parquet")
    test = pq.read_schema(split_dir / "test.parquet")
    for name in RATINGS_COLUMNS:
        want = reference.field(name).type if name in reference.names else None
        got = test.field(name).type if name in test.names else None
        if want != got:
            return f"schema changed: {name} is {got or 'missing'}, reference has {want}"
    return None


def flag_new_ids(split_dir: Path, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add new_user / new_item columns (ids absent from the train id maps: flagged, kept)."""
    counts = {}
    for kind, column in (("user", "user_id"), ("item", "item_id")):
        known = pd.read_parquet(split_dir / f"{kind}s.parquet", columns=["raw_id"])["raw_id"]
        new = ~rows[column].isin(known)
        rows = rows.assign(**{f"new_{kind}": new})
        counts[f"new_{kind}_rows"] = int(new.sum())
        counts[f"new_{kind}s"] = int(rows.loc[new, column].nunique())
    return rows, counts


def quality_report(
    day: int, params: EtlParams, rules: RowRules, reasons: np.ndarray, schema: str | None
) -> dict:
    """The day's quality file: scores, counts per reason, pass/fail and why (deterministic)."""
    scores = quality_scores(reasons)
    if schema is not None:
        scores["consistency"] = 0.0
    below = [m for m in METRICS if scores[m] < params.min_quality]
    failed = [f"{m} {scores[m]:.4f} < {params.min_quality}" for m in below]
    n_bad = int((reasons != "").sum())
    return {
        "day": day,
        "n_days": params.n_days,
        "window": {"first_timestamp": rules.window[0], "last_timestamp": rules.window[1]},
        "rows": len(reasons),
        "accepted": len(reasons) - n_bad,
        "quarantined": n_bad,
        "quarantine_by_reason": reason_counts(reasons),
        **{m: round(scores[m], 6) for m in METRICS},
        "min_quality": params.min_quality,
        "schema": schema or "unchanged",
        "passed": not failed and schema is None,
        "failed_checks": failed + ([schema] if schema else []),
    }


def _write_outputs(
    rows: pd.DataFrame, reasons: np.ndarray, first_position: int, out: Path | None, quarantine: Path
) -> None:
    """Quarantine rows with their reason and test-split position; accepted rows to `out`."""
    bad = reasons != ""
    flagged = rows.assign(
        reason=pd.array(reasons, dtype="string"), position=rows.index + first_position
    )
    write_parquet(quarantine, flagged[bad].reset_index(drop=True))
    if out is None:
        return
    # accepted rows are complete and whole numbers, so the split's dtypes always fit
    write_parquet(out, rows[~bad].astype(RATINGS_DTYPES).reset_index(drop=True))


def check_day(
    day: int, split_dir: Path, params: EtlParams
) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Day `day`'s rows (new ids flagged), the reason per row ("" = valid) and its report."""
    if not 1 <= day <= params.n_days:
        raise RecsysError(f"--day {day}: days run from 1 to etl.n_days={params.n_days}")
    test = pd.read_parquet(split_dir / "test.parquet")
    bounds = day_bounds(len(test), params.n_days)
    start, stop = int(bounds[day - 1]), int(bounds[day])
    rows = test.iloc[start:stop].reset_index(drop=True)
    rules = day_rules(params, split_dir, test, day)
    reasons = row_reasons(rows, rules)
    report = quality_report(day, params, rules, reasons, schema_problem(split_dir))
    rows, new_counts = flag_new_ids(split_dir, rows)
    report.update(new_counts, positions={"start": start, "stop": stop})
    return rows, reasons, report


def run_batch(
    day: int,
    split_dir: Path,
    out: Path,
    quarantine: Path,
    quality: Path,
    params: EtlParams,
) -> dict:
    """Cut, check and write day `day`; return its quality report, raise if it failed."""
    started = time.perf_counter()
    outputs = (quality, timing_path(quality), out, quarantine)
    for path in filter(None, outputs):  # a killed run never leaves an old + new mix
        remove_with_temps(path)
    rows, reasons, report = check_day(day, split_dir, params)
    accepted_out = out if report["passed"] else None  # a failed day writes no day file
    _write_outputs(rows, reasons, report["positions"]["start"], accepted_out, quarantine)
    write_json(quality, report)  # last: a complete set of outputs ends with the report
    write_timing(quality, day, len(rows), time.perf_counter() - started)
    if not report["passed"]:
        raise RecsysError(f"day {day} failed quality: {'; '.join(report['failed_checks'])}")
    return report


def remove_with_temps(path: Path) -> None:
    """Remove `path` and temp files a killed writer left beside it (io.atomic_path's names)."""
    path.unlink(missing_ok=True)
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        temp.unlink(missing_ok=True)


def timing_path(quality: Path) -> Path:
    """Where a day's processing time lives: beside its quality file, not hashed by DVC."""
    return quality.with_suffix(".timing.json")


def write_timing(quality: Path, day: int, rows: int, seconds: float) -> None:
    """Write and log the day's processing time and throughput (rows per second)."""
    timing = {"day": day, "rows": rows, "duration_s": round(seconds, 4)}
    timing["rows_per_s"] = round(rows / seconds, 1) if seconds > 0 else None
    write_json(timing_path(quality), timing)
    log_event("batch_done", **timing)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one day, print one summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.etl.day", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--day", type=int, required=True, help="1-based day number")
    parser.add_argument("--split", type=Path, required=True, help="the split stage's folder")
    parser.add_argument("--out", type=Path, required=True, help="accepted rows (parquet)")
    parser.add_argument("--quarantine", type=Path, required=True, help="rejected rows (parquet)")
    parser.add_argument("--quality", type=Path, required=True, help="quality report (JSON)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        params = load_params(args.params).etl
        paths = (args.split, args.out, args.quarantine, args.quality)
        report = run_batch(args.day, *paths, params)
        print(
            f"batch day {args.day}: {report['accepted']:,} accepted, "
            f"{report['quarantined']:,} quarantined -> {args.out}"
        )
        return 0

    return run_reporting_errors("batch", body)


if __name__ == "__main__":
    sys.exit(main())
