"""`recsys bench scale`: split + 20 daily batches + one training epoch at MovieLens sizes.

For each size, synthetic ratings with that release's counts of ratings, users and items
(`recsys synth`, seed 0, generated once into the cache like `recsys bench etl`) go through,
in one child process per size and without DVC: the split stage's function, every day's batch
stage function with its quality checks (the same code as `recsys bench etl`), then, for each
model, building its training tensors and one training epoch with params.yaml's settings.

An epoch that would outlast `--max-epoch-s` stops there; its time is then projected from the
measured samples/s and reported with `"epoch_complete": false`. Peak memory is the child's
own peak RSS (getrusage RUSAGE_SELF), read after each phase, so generating the data never
counts and each size is measured alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recsys.bench.etl import measure, synthetic_ratings
from recsys.errors import RecsysError, run_reporting_errors

# ratings, users, items of each GroupLens release (its README); keys: recsys.config.DATASETS
SIZES: dict[str, tuple[int, int, int]] = {
    "ml-100k": (100_000, 943, 1_682),
    "ml-1m": (1_000_209, 6_040, 3_706),
    "ml-10m": (10_000_054, 69_878, 10_677),
    "ml-20m": (20_000_263, 138_493, 26_744),
    "ml-25m": (25_000_095, 162_541, 59_047),
    "ml-32m": (32_000_204, 200_948, 87_585),
}


def peak_rss_mb() -> float:
    """This process's peak resident set so far, MB (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_one_epoch(model: str, split_dir: Path, params_path: Path, max_epoch_s: float) -> dict:
    """Build `model`'s training tensors, then train one epoch (or until max_epoch_s).

    Each model reads the split itself, as its train@ stage does, so prep_s includes that read.
    """
    import torch

    from recsys.config import load_params
    from recsys.training.tensors import load_split
    from recsys.training.train import Trainer, model_config

    params = load_params(params_path)
    began = time.perf_counter()
    trainer = Trainer(model, model_config(model, params), load_split(split_dir), params.train)
    prep_s = time.perf_counter() - began
    began = time.perf_counter()
    metrics = trainer.loop.run_epoch(1, None, max_seconds=max_epoch_s)
    trained_s = time.perf_counter() - began
    everything = torch.arange(len(trainer.train_set))
    samples, total = metrics["train/samples"], trainer.train_set.n_targets(everything)
    complete = samples >= total
    samples_per_s = samples / max(trained_s, 1e-9)
    return {
        "prep_s": round(prep_s, 2),
        "trained_s": round(trained_s, 2),
        "epoch_s": round(trained_s if complete else total / samples_per_s, 2),
        "epoch_complete": complete,
        "samples": int(samples),
        "epoch_samples": int(total),
        "samples_per_s": round(samples_per_s, 1),
        "batch_size": trainer.loop.hyper.batch_size,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_size(
    ratings: Path, work: Path, models: list[str], params_path: Path, max_epoch_s: float
) -> dict:
    """The measured child's work for one size: ETL phases, then each model's epoch."""
    began = time.perf_counter()
    result = measure(ratings, work)
    result["etl_peak_rss_mb"] = peak_rss_mb()
    result["train"] = {
        model: train_one_epoch(model, work / "split", params_path, max_epoch_s) for model in models
    }
    result["total_s"] = round(time.perf_counter() - began, 2)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_child(size: str, models: list[str], params_path: Path, max_epoch_s: float) -> dict:
    """Generate (or reuse) the size's synthetic data and measure it in a fresh process."""
    rows, users, items = SIZES[size]
    ratings = synthetic_ratings(rows, users=users, items=items)
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{size}-") as work:
        cmd = [
            sys.executable, "-m", "recsys.bench.scale", "--ratings", str(ratings),
            "--params", str(params_path), "--max-epoch-s", str(max_epoch_s),
            "--models", *models, "--", work,
        ]  # fmt: skip
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr: progress
    if proc.returncode != 0:
        raise RecsysError(f"the {size} run failed (exit {proc.returncode}; its error is above)")
    return {"rows": rows, "users": users, "items": items, **json.loads(proc.stdout)}


def bench_scale(
    sizes: list[str], models: list[str], params_path: Path, max_epoch_s: float
) -> dict[str, dict]:
    """{size: figures} for each size, each measured in its own child process."""
    from recsys.config import load_params
    from recsys.models.registry import model_class

    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise RecsysError(f"unknown size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    load_params(params_path)  # a bad params file is one line here, not a child's failure
    for model in models:
        model_class(model)
    return {size: run_child(size, models, params_path, max_epoch_s) for size in sizes}


def render(results: dict[str, dict]) -> str:
    """A few human lines per size."""
    lines = []
    for size, r in results.items():
        lines.append(
            f"{size}: {r['rows']:,} ratings, split {r['split_s']} s + 20 days {r['batches_s']} s, "
            f"total {r['total_s']} s, peak RSS {r['peak_rss_mb']:,} MB"
        )
        for model, t in r["train"].items():
            how = "" if t["epoch_complete"] else f" (projected from {t['samples']:,} samples)"
            lines.append(
                f"  {model}: tensors {t['prep_s']} s, epoch {t['epoch_s']} s{how}, "
                f"{t['samples_per_s']:,} samples/s, peak RSS {t['peak_rss_mb']:,} MB"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The measured child: `python -m recsys.bench.scale --ratings CSV ... WORKDIR` prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m recsys.bench.scale", description=__doc__)
    parser.add_argument("--ratings", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--max-epoch-s", type=float, default=300.0)
    parser.add_argument("--models", nargs="*", default=["ncf", "ss4rec"])
    parser.add_argument("work", type=Path)
    args = parser.parse_args(argv)

    def body() -> int:
        result = measure_size(args.ratings, args.work, args.models, args.params, args.max_epoch_s)
        print(json.dumps(result))
        return 0

    return run_reporting_errors("bench_scale", body)


if __name__ == "__main__":
    sys.exit(main())
