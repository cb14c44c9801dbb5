"""`recsys bench etl`: time and peak memory of split + every daily batch + quality, at scale.

Synthetic ratings (`recsys synth --rows N`, seed 0) are generated once into the cache
(`$RECSYS_CACHE_DIR/synth/rows_N`, default ~/.cache/recsys) and reused. The measured work runs
in a child process, in process (no DVC): the split stage's function, then every day's batch
stage function, with the default params. Peak memory is the child's peak RSS
(getrusage RUSAGE_CHILDREN), so generating the data never counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recsys.config import EtlParams, SplitParams
from recsys.errors import RecsysError, run_reporting_errors


def cache_root() -> Path:
    """$RECSYS_CACHE_DIR, else ~/.cache/recsys."""
    return Path(os.environ.get("RECSYS_CACHE_DIR", Path.home() / ".cache" / "recsys"))


def synthetic_ratings(rows: int, users: int | None = None, items: int | None = None) -> Path:
    """ratings.csv of `rows` synthetic ratings (seed 0), generated once and then reused."""
    from recsys.data.synth import SynthConfig, synthesize

    name = f"rows_{rows}" + (f"_users_{users}_items_{items}" if users or items else "")
    out_dir = cache_root() / "synth" / name
    if not (out_dir / "ratings.csv").is_file():
        print(f"bench: generating {rows:,} synthetic ratings into {out_dir}", file=sys.stderr)
        config = SynthConfig(rows=rows, users=users, items=items)
        print(synthesize(config, out_dir), file=sys.stderr)
    return out_dir / "ratings.csv"


def measure(ratings: Path, work: Path) -> dict:
    """Split, then every day with its quality checks; seconds per phase (in this process)."""
    from recsys.etl.day import run_batch
    from recsys.etl.split import run_split

    began = time.perf_counter()
    meta = run_split(ratings, work / "split", SplitParams())
    split_s = time.perf_counter() - began
    etl = EtlParams()
    quarantined = 0
    for day in range(1, etl.n_days + 1):
        name = f"day_{day:02d}"
        report = run_batch(
            day,
            work / "split",
            work / "batches" / f"{name}.parquet",
            work / "batches" / "quarantine" / f"{name}.parquet",
            work / "quality" / f"{name}.json",
            etl,
        )
        quarantined += report["quarantined"]
    total_s = time.perf_counter() - began
    return {
        "split_s": round(split_s, 2),
        "batches_s": round(total_s - split_s, 2),
        "total_s": round(total_s, 2),
        "test_rows": meta["test"]["n_ratings"],
        "quarantined": quarantined,
    }


def bench_etl(rows: int) -> dict:
    """Run `measure` in a child process on `rows` synthetic ratings; add its peak RSS."""
    ratings = synthetic_ratings(rows)
    with tempfile.TemporaryDirectory(prefix="bench-etl-") as work:
        cmd = [sys.executable, "-m", "recsys.bench.etl", "--ratings", str(ratings), work]
        began = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        process_s = time.perf_counter() - began
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise RecsysError(f"bench etl: the measured run failed: {lines[-1]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the measured child only
    return {
        "rows": rows,
        **result,
        "process_s": round(process_s, 2),  # with interpreter start-up and imports
        # CPU seconds (user + system): steadier than wall time on a shared machine
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is KiB on Linux
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # others' work skews wall times
    }


def render(result: dict) -> str:
    """One human line of the figures."""
    return (
        f"bench etl: {result['rows']:,} rows: split {result['split_s']} s + "
        f"{result['test_rows']:,} test rows in 20 days {result['batches_s']} s = "
        f"{result['total_s']} s ({result['cpu_s']} CPU s), peak RSS {result['peak_rss_mb']:,} MB"
    )


def main(argv: list[str] | None = None) -> int:
    """The measured child: `python -m recsys.bench.etl --ratings CSV WORKDIR` prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m recsys.bench.etl", description=__doc__)
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("work", type=Path)
    args = parser.parse_args(argv)

    def body() -> int:
        print(json.dumps(measure(args.ratings, args.work)))
        return 0

    return run_reporting_errors("bench_etl", body)


if __name__ == "__main__":
    sys.exit(main())
