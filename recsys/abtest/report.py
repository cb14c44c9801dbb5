"""`report` stage: the A/B story over all days -> metrics/summary.json and plot data.

The story is an offline replay (see recsys.abtest.analysis): the summary says so first.

    python -m recsys.abtest.report --abtest-dir metrics/abtest --days 20 \\
        --out-summary metrics/summary.json --out-plot metrics/abtest_effects.csv \\
        --out-metrics metrics/ab.json

The plot file has one row per day: for every metric the cumulative estimate B - A of the
decision design and its repeated confidence interval (valid under the daily looks); dvc.yaml
declares one plot per metric over it (`dvc plots show`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from recsys.config import AbtestParams, load_params
from recsys.errors import RecsysError, run_reporting_errors
from recsys.io import write_json, write_text


def read_days(abtest_dir: Path, days: int) -> list[dict]:
    """day_01..day_NN.json in order; a missing or broken one is a one-line error."""
    docs = []
    for day in range(1, days + 1):
        path = Path(abtest_dir) / f"day_{day:02d}.json"
        try:
            docs.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RecsysError(f"{path}: not found; run abtest@{day} first") from None
        except json.JSONDecodeError as err:
            raise RecsysError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return docs


def _sequential(doc: dict) -> dict:
    """The decision design's sequential block of a day's document."""
    design = doc["decision"]["design"]
    return doc["windows"]["cumulative"]["sequential"][design]


def effects_table(docs: list[dict], metrics: list[str]) -> pd.DataFrame:
    """One row per day: estimate and repeated-CI ends of every success metric and guardrail
    (cumulative, the decision's design)."""
    rows = []
    for doc in docs:
        row: dict = {"day": doc["day"]}
        guardrails = doc["windows"]["cumulative"]["guardrails"][doc["decision"]["design"]]
        for metric, s in {**_sequential(doc), **guardrails}.items():
            if metric in metrics or metric in guardrails:
                row[metric] = s["estimate"]
                row[f"{metric}_low"], row[f"{metric}_high"] = s["repeated_ci"]
        rows.append(row)
    return pd.DataFrame(rows)


def first_significant_day(docs: list[dict], metric: str) -> int | None:
    """The first look at which the metric was significant (None: never)."""
    for doc in docs:
        if _sequential(doc)[metric]["significant"]:
            return doc["day"]
    return None


def summarise(docs: list[dict], params: AbtestParams) -> dict:
    """The summary document: final decision, when each metric became significant, the days."""
    last = docs[-1]
    final = _sequential(last)
    cumulative = last["windows"]["cumulative"]
    design = last["decision"]["design"]
    return {
        "what_was_compared": last["framing"],
        "days_analysed": len(docs),
        "model_a": last["model_a"],
        "model_b": last["model_b"],
        "checkpoints": last["checkpoints"],
        "unit": last["decision"]["unit"],
        "decision": last["decision"],
        "guardrails": cumulative["guardrails"][design],
        "randomised_design": {
            "srm": cumulative["randomised"]["srm"],
            "valid": cumulative["randomised"]["valid"],
            "reason": cumulative["randomised"]["reason"],
        },
        "segments_exploratory": last["segments"],
        "seeds": last["seeds"],
        "final": {
            metric: {**final[metric], "first_significant_day": first_significant_day(docs, metric)}
            for metric in params.metrics
        },
        "business_impact": last["business_impact"],
        "days": [
            {
                "day": doc["day"],
                "sentence": doc["decision"]["sentence"],
                "n_users_cumulative": doc["windows"]["cumulative"]["n_users"],
                "n_events_cumulative": doc["windows"]["cumulative"]["n_events"],
            }
            for doc in docs
        ],
    }


def verdict(summary: dict) -> dict:
    """The summary's few comparable numbers (a DVC metric): each metric's final B - A and
    winner, and the projected daily value."""
    final = summary["final"]
    return {
        "days_analysed": summary["days_analysed"],
        **{m: {"estimate": f["estimate"], "winner": f["winner"]} for m, f in final.items()},
        "daily_value": summary["business_impact"]["daily_value"],
    }


def run_report(
    *, abtest_dir: Path, days: int, out_summary: Path, out_plot: Path, params: AbtestParams
) -> dict:
    """Read the daily results, write the summary JSON and the effects CSV; return the summary."""
    docs = read_days(abtest_dir, days)
    summary = summarise(docs, params)
    write_json(out_summary, summary)
    write_text(out_plot, effects_table(docs, params.metrics).to_csv(index=False))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the report, print the final decision."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.abtest.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--abtest-dir", type=Path, required=True, help="folder of day_NN.json")
    parser.add_argument("--days", type=int, default=None, help="default: abtest.n_days")
    parser.add_argument("--out-summary", type=Path, required=True)
    parser.add_argument("--out-plot", type=Path, required=True, help="effects CSV for DVC plots")
    parser.add_argument("--out-metrics", type=Path, default=None, help="verdict (DVC metric)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        params = load_params(args.params).abtest
        summary = run_report(
            abtest_dir=args.abtest_dir,
            days=args.days or params.n_days,
            out_summary=args.out_summary,
            out_plot=args.out_plot,
            params=params,
        )
        if args.out_metrics is not None:
            write_json(args.out_metrics, verdict(summary))
        print(summary["decision"]["sentence"])
        return 0

    return run_reporting_errors("report", body)


if __name__ == "__main__":
    sys.exit(main())
