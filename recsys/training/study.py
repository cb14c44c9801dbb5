"""Seeds × models on one split, outside DVC: mean ± sd and per-user paired tests (`recsys study`).

A run is `model[:variant]` (e.g. `ss4rec:no_time`), trained to early stopping on val with
params.yaml's settings (plus `--set key=value` overrides) once per seed, then scored once on
test. Each user's NDCG@10 and HR@10 are averaged over the user's test events and over the
seeds (the model, not one checkpoint); two runs are compared by a paired t-test over users
(and the share of users whose NDCG improved). Choices are made on val: test is read once per
run and seed, for the table.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from recsys.config import Params, parse_params
from recsys.data.canonical import read_ratings
from recsys.data.planted import PLANTED, Planted, write_planted
from recsys.errors import RecsysError
from recsys.etl.split import run_split
from recsys.io import write_json
from recsys.training.checkpoint import load_model
from recsys.training.leave_one_out import loo_split
from recsys.training.runtime import resolve_device
from recsys.training.scoring import K, history_len, score_queries
from recsys.training.tensors import (
    SPLIT_PARTS,
    EventLog,
    HistoryBy,
    QuerySet,
    SplitData,
    load_split,
)
from recsys.training.train import model_config, train_model

METRICS = ("ndcg@10", "hr@10")


def study_split(source: str, work: Path, params: Params) -> tuple[SplitData, HistoryBy]:
    """`planted:<kind>` (generated, temporal split), `loo[K]:<ratings.csv>` (leave-one-out
    after a K-core filter, e.g. loo5:data/ml-100k/ratings.csv) or a split folder."""
    if source.startswith("loo"):
        prefix, _, path = source.partition(":")
        k = int(prefix[3:] or 0)
        return loo_split(read_ratings(Path(path)), k), "order"
    if source.startswith("planted:"):
        kind = source.split(":", 1)[1]
        if kind not in PLANTED:
            raise RecsysError(f"unknown planted data {kind!r} (choose from: {', '.join(PLANTED)})")
        write_planted(kind, Planted(), work / "data")
        run_split(work / "data" / "ratings.csv", work / "split", params.split)
        return load_split(work / "split"), "time"
    return load_split(Path(source)), "time"


def with_overrides(params: Params, overrides: list[str], run: str, seed: int) -> Params:
    """params with `section.key=value` overrides, the run's variant and the seed."""
    raw = params.model_dump(mode="json")
    model, _, variant = run.partition(":")
    settings = [*overrides, f"train.seed={seed}"] + (
        [f"{model}.variant={variant}"] if variant else []
    )
    for item in settings:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in raw or not name:
            raise RecsysError(f"--set {item!r}: expected section.key=value with a params section")
        raw[section][name] = _parsed(value)
    return parse_params(raw, source="--set")


def _parsed(value: str):
    """A --set value as YAML would read it (numbers, true/false, strings)."""
    import yaml

    return yaml.safe_load(value)


def per_user(data: SplitData, log: EventLog, ranks: np.ndarray) -> pd.DataFrame:
    """Mean NDCG@K and HR@K per raw user over the test events."""
    frame = pd.DataFrame({"user_id": log.frame["user_id"].to_numpy()[log.rows_of("test")]})
    frame["ndcg@10"] = np.where(ranks <= K, 1.0 / np.log2(ranks + 1.0), 0.0)
    frame["hr@10"] = (ranks <= K).astype(float)
    return frame.groupby("user_id")[list(METRICS)].mean()


def run_once(run: str, params: Params, data: SplitData, log: EventLog, work: Path) -> dict:
    """Train one run with one seed, score test once; val metric, test per-user frame."""
    name = run.partition(":")[0]
    out = work / f"{run.replace(':', '-')}-{params.train.seed}.pt"
    state = train_model(
        model_name=name, config=model_config(name, params), data=data, train=params.train,
        out=out, history_by=log.history_by, use_wandb=False,
    )  # fmt: skip
    model, ckpt = load_model(out)
    config = type(model).Config(**ckpt["config"])
    queries = QuerySet(log, log.rows_of("test"), history_len(model, config, params.train))
    device = resolve_device(params.train.device)
    scored = score_queries(model.to(device), queries, params.train.eval_batch_size, device)
    return {
        "val": state.best_metrics,
        "best_epoch": state.stopper.best_epoch,
        "epochs": state.epoch,
        "users": per_user(data, log, scored.rank),
    }


def run_study(
    source: str,
    runs: list[str],
    seeds: list[int],
    params: Params,
    overrides: list[str],
    cache: Path | None = None,
) -> dict:
    """Every run × seed; the table rows and the paired comparisons of each pair of runs.

    With `cache`, each run × seed result (val metrics, epochs, per-user test metrics) is kept
    there under a key of the data's bytes and the params sections the run reads (`_cache_path`),
    and reused by a later study with the same key: an interrupted study resumes, and an
    ablation table can share the `full` runs of a main table (the test set is still read once
    per run and seed).
    """
    with tempfile.TemporaryDirectory(prefix="recsys-study-") as tmp:
        work = Path(tmp)
        data, history_by = study_split(source, work, params)
        log = EventLog(data, history_by)
        fingerprint = _data_fingerprint(source)
        results = {}
        for run in runs:
            results[run] = []
            for seed in seeds:
                run_params = with_overrides(params, overrides, run, seed)
                path = _cache_path(cache, fingerprint, run, run_params) if cache else None
                if path is not None and path.exists():
                    results[run].append(_read_cached(path))
                    continue
                result = run_once(run, run_params, data, log, work)
                if path is not None:
                    _write_cached(path, result)
                results[run].append(result)
    table = {run: summary(res) for run, res in results.items()}
    users = {run: sum(r["users"] for r in res) / len(res) for run, res in results.items()}
    comparisons = {
        f"{run} vs {other}": paired(users[run], users[other])
        for i, run in enumerate(runs)
        for other in runs[i + 1 :]
    }
    return {"data": source, "seeds": seeds, "set": overrides, "order": runs, "runs": table,
            "comparisons": comparisons}  # fmt: skip


def _data_fingerprint(source: str) -> str:
    """The bytes a study reads (the ratings file of `looK:`, or the parts of a split folder:
    not its meta.json or quarantine, which a pipeline run may rewrite with the same rows) or,
    for planted data, its name (generated from fixed defaults)."""
    if source.startswith("planted:"):
        return source
    prefix, _, rest = source.partition(":") if source.startswith("loo") else ("", "", source)
    path = Path(rest)  # K of `looK:` is in the key
    files = [path / f"{part}.parquet" for part in SPLIT_PARTS] if path.is_dir() else [path]
    digest = hashlib.sha256(prefix.encode())
    for f in files:
        digest.update(f.name.encode())
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def _cache_path(cache: Path, fingerprint: str, run: str, params: Params) -> Path:
    """The run's file in `cache`: keyed by the data and the params sections a run reads
    (training, split, the row rules' scale, the model's own), so that a change elsewhere in
    params.yaml (the A/B stage, the flows) does not retrain it."""
    dump = params.model_dump(mode="json")
    sections = ("train", "split", "etl", run.partition(":")[0])
    read = {section: dump[section] for section in sections if section in dump}
    key = json.dumps([fingerprint, run, read], sort_keys=True)
    short = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / f"{run.replace(':', '-')}-{params.train.seed}-{short}.json"


def _write_cached(path: Path, result: dict) -> None:
    users = result["users"]
    write_json(path, {**result, "users": {"user_id": users.index.tolist(),
                                          **{m: users[m].tolist() for m in METRICS}}})  # fmt: skip


def _read_cached(path: Path) -> dict:
    result = json.loads(path.read_text())
    result["users"] = pd.DataFrame(result["users"]).set_index("user_id")
    return result


def summary(results: list[dict]) -> dict:
    """Mean and sd over seeds of each test metric (events pooled per seed), val and epochs."""
    row = {}
    for metric in METRICS:
        per_seed = [float(r["users"][metric].mean()) for r in results]  # user-averaged
        row[metric] = {"mean": float(np.mean(per_seed)), "sd": float(np.std(per_seed, ddof=1))
                       if len(per_seed) > 1 else 0.0, "per_seed": per_seed}  # fmt: skip
    row["val/ndcg@10"] = [r["val"].get("val/ndcg@10") for r in results]
    row["best_epoch"] = [r["best_epoch"] for r in results]
    row["epochs"] = [r["epochs"] for r in results]
    return row


def paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """a - b per user (seed-averaged), paired t-test over users, per metric."""
    out = {}
    for metric in METRICS:
        diff = (a[metric] - b[metric]).to_numpy()
        test = stats.ttest_rel(a[metric].to_numpy(), b[metric].to_numpy())
        out[metric] = {
            "diff": float(diff.mean()),
            "p": float(test.pvalue) if np.isfinite(test.pvalue) else 1.0,
            "users": len(diff),
            "better_share": float(np.mean(diff > 0)),
        }
    return out


def render(result: dict) -> str:
    """The study as two markdown tables: runs (mean ± sd) and paired comparisons."""
    seeds = ", ".join(map(str, result["seeds"]))
    lines = [
        f"Data: `{result['data']}`; seeds {seeds}; per-user means (test), mean ± sd over seeds.",
        "",
        "| run | test NDCG@10 | test HR@10 | best epoch (of) |",
        "|---|---|---|---|",
    ]
    order = result.get("order", list(result["runs"]))  # JSON files sort their keys
    for run in order:
        row = result["runs"][run]
        cells = [f"{row[m]['mean']:.4f} ± {row[m]['sd']:.4f}" for m in METRICS]
        epochs = ", ".join(
            f"{b} ({e})" for b, e in zip(row["best_epoch"], row["epochs"], strict=True)
        )
        lines.append(f"| `{run}` | {cells[0]} | {cells[1]} | {epochs} |")
    lines += ["", "| comparison | Δ NDCG@10 | p (paired t, users) | users better | Δ HR@10 | p |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    pairs = [f"{a} vs {b}" for i, a in enumerate(order) for b in order[i + 1 :]]
    for name in pairs:
        n, h = result["comparisons"][name]["ndcg@10"], result["comparisons"][name]["hr@10"]
        lines.append(
            f"| {name} | {n['diff']:+.4f} | {n['p']:.2g} | {n['better_share']:.0%} of "
            f"{n['users']} | {h['diff']:+.4f} | {h['p']:.2g} |"
        )
    return "\n".join(lines)
