"""`recsys bench ab`: wall time of all 20 days' A/B statistics on ml-100k-sized and 1M events.

Fake inputs (recsys.abtest.fake) of the given sizes; timed: serving (joins + outcomes) and
`analyse_day` for every day 1..n_days with the params' resample counts. Generation is not
timed. Repeats give a median, since the machine may be shared.
"""

from __future__ import annotations

import statistics
import time

import pandas as pd
from tqdm import tqdm

from recsys.abtest.analysis import all_metrics
from recsys.abtest.fake import fake_experiment
from recsys.abtest.outcomes import event_outcomes, serve
from recsys.abtest.stage import analyse_day
from recsys.config import AbtestParams


def time_all_days(n_events: int, params: AbtestParams, seed: int = 0) -> dict:
    """Seconds to serve and analyse every day of one fake experiment of n_events."""
    experiment = fake_experiment(n_events=n_events, n_days=params.n_days, seed=seed)
    events = pd.concat(
        [b.assign(day=d) for d, b in enumerate(experiment.batches, start=1)], ignore_index=True
    )
    start = time.perf_counter()
    served = serve(events, experiment.predictions_a, experiment.predictions_b, ("a", "b"))
    outcomes = event_outcomes(served, all_metrics(params))
    serve_s = time.perf_counter() - start
    per_day, cpu_start = [], time.process_time()
    for day in tqdm(range(1, params.n_days + 1), desc=f"ab {n_events:,}", leave=False):
        t0 = time.perf_counter()
        analyse_day(outcomes[outcomes["day"] <= day], day, params)
        per_day.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu_start
    return {
        "n_events": len(events),
        "n_users": int(events["user_id"].nunique()),
        "serve_seconds": serve_s,
        "statistics_seconds": sum(per_day),
        "statistics_cpu_seconds": cpu,  # this process's CPU time: robust on a shared machine
        "slowest_day_seconds": max(per_day),
    }


def bench_ab(sizes: list[int], params: AbtestParams, repeats: int = 1) -> dict:
    """Median over repeats of the all-days timing for each size."""
    results = []
    for n_events in sizes:
        runs = [time_all_days(n_events, params, seed=r) for r in range(repeats)]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results.append(
            {
                **median,
                "repeats": repeats,
                "total_seconds_each": [r["serve_seconds"] + r["statistics_seconds"] for r in runs],
            }
        )
    return {
        "bench": "ab",
        "n_days": params.n_days,
        "n_bootstrap": params.n_bootstrap,
        "n_permutations": params.n_permutations,
        "sizes": results,
    }
