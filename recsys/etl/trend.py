"""`quality` stage: the days' quality reports as a few comparable numbers and one chart.

    python -m recsys.etl.trend --quality-dir metrics/quality \\
        --out-metrics metrics/quality.json --out-plot metrics/quality_trend.csv

Reads every metrics/quality/day_NN.json written so far (the days not yet run are simply not
there). The metrics file (a DVC metric, one column each in `dvc exp show`) holds how many days
ran and failed, the rows and quarantined rows over all of them and each quality score's worst
day; the CSV holds one row per day for `dvc plots show`'s quality chart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from recsys.errors import RecsysError, run_reporting_errors
from recsys.etl.quality import METRICS
from recsys.io import write_json, write_text

DAY_FILE = re.compile(r"^day_(\d+)\.json$")


def read_reports(folder: Path) -> list[dict]:
    """The day_NN.json quality reports of `folder` in day order; a broken one is an error."""
    paths = sorted(
        (int(m[1]), p) for p in Path(folder).glob("day_*.json") if (m := DAY_FILE.match(p.name))
    )
    reports = []
    for _, path in paths:
        try:
            reports.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise RecsysError(f"{path}: not valid JSON ({err}); rerun its batch stage") from None
    return reports


def trend_frame(reports: list[dict]) -> pd.DataFrame:
    """One row per day: the four quality scores and the share of rows quarantined."""
    rows = [
        {"day": r["day"], **{m: r[m] for m in METRICS},
         "quarantined_share": r["quarantined"] / r["rows"] if r["rows"] else 0.0}
        for r in reports
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["day", *METRICS, "quarantined_share"])


def summary(reports: list[dict]) -> dict:
    """Days run and failed, rows and quarantined rows in all, each score's worst day."""
    return {
        "days": len(reports),
        "days_failed": sum(not r["passed"] for r in reports),
        "rows": sum(r["rows"] for r in reports),
        "quarantined": sum(r["quarantined"] for r in reports),
        "worst": {m: min((r[m] for r in reports), default=None) for m in METRICS},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write both files, print one line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.etl.trend", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quality-dir", type=Path, required=True, help="day_NN.json folder")
    parser.add_argument("--out-metrics", type=Path, required=True, help="summary (JSON)")
    parser.add_argument("--out-plot", type=Path, required=True, help="one row per day (CSV)")
    args = parser.parse_args(argv)

    def body() -> int:
        reports = read_reports(args.quality_dir)
        result = summary(reports)
        write_text(args.out_plot, trend_frame(reports).to_csv(index=False))
        write_json(args.out_metrics, result)
        print(
            f"quality: {result['days']} day(s), {result['days_failed']} failed, "
            f"{result['quarantined']:,} of {result['rows']:,} rows quarantined"
        )
        return 0

    return run_reporting_errors("quality", body)


if __name__ == "__main__":
    sys.exit(main())
