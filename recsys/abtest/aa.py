"""A/A replays through the abtest stage's own code: is the false-positive rate <= alpha?

    python -m recsys.abtest.aa --runs 1000 --json

Each replay is a fake test split with NO effect (recsys.abtest.fake with effect=0 and its
own seed: both "models" draw their predictions from one distribution), served and analysed
at the last of `abtest.n_days` looks by `recsys.abtest.stage.analyse_day` with a salt of its
own: the functions of the abtest@N stage, minus the bootstrap, permutations and segments
(the decision does not use them). A replay is a false positive of a design when any
success metric's Holm-adjusted repeated p-value is <= alpha at the last look; repeated
p-values never rise, so that is "rejected at any of the daily looks". Also reported: the
fixed-sample p-values of the last look (uniform under A/A: KS test) and the SRM alarm rate.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from scipy import stats as sps

from recsys.abtest.analysis import DESIGNS, all_metrics
from recsys.abtest.fake import fake_experiment
from recsys.abtest.outcomes import event_outcomes, serve
from recsys.abtest.stage import analyse_day
from recsys.config import AbtestParams


def replay(seed: int, params: AbtestParams, n_events: int) -> dict:
    """One A/A experiment: per design, rejected or not; the last look's fixed-sample p."""
    experiment = fake_experiment(n_events=n_events, n_days=params.n_days, effect=0.0, seed=seed)
    events = pd.concat(
        [b.assign(day=d) for d, b in enumerate(experiment.batches, start=1)], ignore_index=True
    )
    served = serve(events, experiment.predictions_a, experiment.predictions_b, ("a", "b"))
    outcomes = event_outcomes(served, all_metrics(params))
    run_params = params.model_copy(update={"salt": f"aa-{seed}"})
    cumulative = analyse_day(outcomes, params.n_days, run_params, resample=False)["windows"][
        "cumulative"
    ]
    fixed = {
        "paired": [cumulative["paired"][m]["p_value"] for m in params.metrics],
        "randomised": [cumulative["randomised"]["metrics"][m]["p_value"] for m in params.metrics],
    }
    return {
        "rejected": {
            d: any(s["significant"] for s in cumulative["sequential"][d].values()) for d in DESIGNS
        },
        "fixed_p": fixed,
        "srm_alarm": not cumulative["randomised"]["valid"],
    }


def simulate(runs: int, params: AbtestParams, n_events: int = 10_000, first_seed: int = 0):
    """`runs` A/A replays: false-positive rate per design, with a binomial 95 % upper bound."""
    results = [replay(first_seed + r, params, n_events) for r in range(runs)]
    out = {
        "bench": "aa",
        "runs": runs,
        "n_events": n_events,
        "n_days": params.n_days,
        "alpha": params.alpha,
        "metrics": list(params.metrics),
        "rule": "any success metric's Holm-adjusted repeated p <= alpha at any daily look",
    }
    for design in DESIGNS:
        rejected = sum(r["rejected"][design] for r in results)
        p = np.array([v for r in results for v in r["fixed_p"][design]], dtype=float)
        p = p[np.isfinite(p)]
        out[design] = {
            "false_positives": rejected,
            "false_positive_rate": rejected / runs,
            "rate_upper_95": float(sps.beta.ppf(0.95, rejected + 1, runs - rejected)),
            "fixed_sample_p_uniform_ks_p": float(sps.kstest(p, "uniform").pvalue),
        }
    out["srm_alarm_rate"] = sum(r["srm_alarm"] for r in results) / runs
    return out


def render(result: dict) -> str:
    """A few lines for the terminal."""
    lines = [
        f"{result['runs']} A/A replays of {result['n_events']:,} events over "
        f"{result['n_days']} daily looks, alpha {result['alpha']:g} ({result['rule']}):"
    ]
    for design in DESIGNS:
        r = result[design]
        lines.append(
            f"  {design}: {r['false_positives']} false positives = "
            f"{r['false_positive_rate']:.1%} (95 % upper bound {r['rate_upper_95']:.1%}); "
            f"last look's fixed-sample p uniform: KS p = {r['fixed_sample_p_uniform_ks_p']:.2f}"
        )
    lines.append(f"  SRM alarms: {result['srm_alarm_rate']:.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the replays, print the rates."""
    from recsys.config import load_params
    from recsys.errors import run_reporting_errors

    parser = argparse.ArgumentParser(
        prog="python -m recsys.abtest.aa", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=1000, help="A/A replays (default 1000)")
    parser.add_argument("--events", type=int, default=10_000, help="events per replay")
    parser.add_argument("--params", default="params.yaml", help="alpha, looks, metrics from here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    def body() -> int:
        result = simulate(args.runs, load_params(args.params).abtest, args.events)
        print(json.dumps(result, indent=2) if args.json else render(result))
        return 0

    return run_reporting_errors("aa", body)


if __name__ == "__main__":
    sys.exit(main())
