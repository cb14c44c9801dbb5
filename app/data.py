"""What the dashboard shows, read from DVC-tracked files: pure functions, no Streamlit.

Every loader takes the project root and returns a DataFrame / dict, or None when the file it
needs is not built yet (the page then shows the command to run). Nothing here writes a file
or runs pipeline work; the app caches these results keyed on `cache_key(root)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd

QUALITY_METRICS = ("completeness", "validity", "uniqueness", "consistency")
EVAL_METRICS = ("rmse", "mae", "hr@10", "ndcg@10", "mrr@10")
DAY_FILE = re.compile(r"^day_(\d+)\.json$")


def project_root() -> Path:
    """The project the app reads: $RECSYS_ROOT, else the working directory."""
    return Path(os.environ.get("RECSYS_ROOT", ".")).resolve()


def cache_key(root: Path) -> str:
    """Changes whenever dvc.lock or any file under metrics/ changes (md5 + mtimes)."""
    digest = hashlib.md5()
    lock = root / "dvc.lock"
    digest.update(lock.read_bytes() if lock.is_file() else b"no dvc.lock")
    metrics = root / "metrics"
    if metrics.is_dir():
        for path in sorted(metrics.rglob("*")):
            digest.update(f"{path}:{path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def day_files(folder: Path) -> dict[int, Path]:
    """day_NN.json files of a folder by day number (timing side files excluded)."""
    if not folder.is_dir():
        return {}
    found = {int(m[1]): p for p in folder.iterdir() if (m := DAY_FILE.match(p.name))}
    return dict(sorted(found.items()))


# ---- params and experiments (through dvc.api) ----------------------------------------------


def params(root: Path) -> dict | None:
    """params.yaml as DVC reads it (dvc.api.params_show), or None outside a DVC project."""
    import dvc.api
    from dvc.exceptions import DvcException

    if not (root / "params.yaml").is_file():
        return None
    try:
        return dvc.api.params_show(repo=str(root), stages=None, deps=False)
    except DvcException:
        return None


def experiments(root: Path) -> pd.DataFrame | None:
    """`dvc exp show` as a table: one row per experiment/commit, params and metrics as columns."""
    import dvc.api
    from dvc.exceptions import DvcException

    if not (root / ".dvc").is_dir():
        return None
    try:
        rows = dvc.api.exp_show(repo=str(root))
    except DvcException:
        return None
    if not rows:
        return None
    frame = pd.DataFrame(rows).drop(columns=["typ", "parent", "State", "Executor"], errors="ignore")
    frame = frame.replace("!", None).dropna(axis=1, how="all")  # "!": no value at that rev
    for column in frame.columns[3:]:  # params and metrics: numeric where they all are
        converted = pd.to_numeric(frame[column], errors="coerce")
        if converted.notna().sum() == frame[column].notna().sum():
            frame[column] = converted
    return frame


def headline_columns(frame: pd.DataFrame) -> list[str]:
    """Experiment, rev, params and the models' own metrics (no baselines, no warm/cold)."""
    noisy = ("baselines.", ".warm.", ".cold.", "n_unknown_items", "notes", "n_items")
    return [c for c in frame.columns if not any(part in c for part in noisy)]


def has_experiments(frame: pd.DataFrame) -> bool:
    """Whether `dvc exp show` listed any experiment (not only the workspace and commits)."""
    return "Experiment" in frame and bool(frame["Experiment"].notna().any())


def experiment_diff(frame: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Columns where two experiments (by `Experiment` or `rev`) differ, side by side."""
    label = experiment_labels(frame)
    a, b = frame[label == first].iloc[0], frame[label == second].iloc[0]
    skip = {"Experiment", "rev", "Created"}
    cols = [c for c in frame.columns if c not in skip and str(a[c]) != str(b[c])]
    return pd.DataFrame({"column": cols, first: [a[c] for c in cols], second: [b[c] for c in cols]})


def experiment_labels(frame: pd.DataFrame) -> pd.Series:
    """A readable unique name per row: the experiment name, else the revision."""
    names = frame["Experiment"] if "Experiment" in frame else pd.Series([None] * len(frame))
    return names.fillna(frame["rev"]).astype(str).where(names.notna(), frame["rev"].astype(str))


# ---- pipeline ------------------------------------------------------------------------------


def quality_reports(root: Path) -> list[dict]:
    """metrics/quality/day_NN.json in day order, each with its timing side file merged in."""
    reports = []
    for path in day_files(root / "metrics" / "quality").values():
        report = read_json(path)
        if report is None:
            continue
        timing = read_json(path.with_suffix(".timing.json"))
        report["timing"] = timing
        report["modified"] = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
        reports.append(report)
    return reports


def split_meta(root: Path) -> dict | None:
    """artifacts/split/meta.json (row counts of train/val/test), or None before the split."""
    return read_json(root / "artifacts" / "split" / "meta.json")


def pipeline_status(root: Path):
    """`recsys status` for the project (recsys.status.Status: DVC stages, days done by DVC's
    state, records, coverage, next step); None outside a DVC project; DVC's one-line error
    when it cannot answer (e.g. a `dvc repro` holds the repository lock)."""
    from recsys.errors import RecsysError
    from recsys.pipeline import stage_states
    from recsys.status import Status, count_rows, etl_status, next_step

    if not (root / "dvc.yaml").is_file() or not (root / ".dvc").is_dir():
        return None
    try:
        stages = [s for s in stage_states(root) if not s.name.endswith(".dvc")]
    except RecsysError as err:
        return str(err)
    for stage in stages:  # addressed from the app's working directory: drop the path
        stage.name = stage_name(stage.name)
    dataset = (params(root) or {}).get("data", {}).get("dataset", "ml-100k")
    ratings = root / "data" / dataset / "ratings.csv"
    split, n_ratings = split_meta(root), count_rows(ratings)
    return Status(
        dataset=dataset, ratings_file=str(ratings), n_ratings=n_ratings, split=split,
        stages=stages, etl=etl_status(root, stages, split),
        next_step=next_step(n_ratings, dataset, stages),
    )  # fmt: skip


def last_runs(root: Path) -> pd.DataFrame:
    """When each kind of output was last written (UTC), from file modification times."""
    groups = {
        "split": root / "artifacts/split/meta.json",
        "daily batch": root / "metrics/quality",
        "training": root / "models",
        "evaluation": root / "metrics/eval",
        "A/B test": root / "metrics/abtest",
        "report": root / "metrics/summary.json",
        "dvc.lock": root / "dvc.lock",
    }
    rows = []
    for what, path in groups.items():
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        times = [p.stat().st_mtime for p in files if p.is_file()]
        stamp = pd.Timestamp(max(times), unit="s", tz="UTC") if times else None
        when = stamp.strftime("%Y-%m-%d %H:%M:%S") if stamp is not None else "not yet"
        relative = str(path.relative_to(root))
        rows.append({"output": what, "last written (UTC)": when, "path": relative})
    return pd.DataFrame(rows)


def stage_table(status) -> pd.DataFrame:
    """Every DVC stage of a Status: built, stale and why."""
    rows = [
        {"stage": s.name, "built": s.built, "stale": s.stale, "why": "; ".join(s.changes[:3])}
        for s in status.stages
    ]
    return pd.DataFrame(rows, columns=["stage", "built", "stale", "why"])


def stage_name(addressing: str) -> str:
    """`split` for DVC's `../path/to/repo/dvc.yaml:split` (addressed from another folder)."""
    path, _, name = addressing.rpartition(":")
    return name if path.endswith("dvc.yaml") else addressing


def next_command(status) -> str:
    """The command that moves the pipeline forward: the next day once the rest is current."""
    etl = status.etl
    if etl and etl.last_quality and not etl.last_quality["passed"]:
        return f"recsys etl --day {etl.last_day}   # after fixing the data: see Data quality"
    others = [s for s in status.stages if not s.name.startswith("batch@")]
    if (
        status.n_ratings is not None
        and etl
        and etl.next_day
        and not any(s.stale or not s.built for s in others)
    ):
        return "recsys etl --next"
    return status.next_step


# ---- data quality --------------------------------------------------------------------------


def quality_frame(root: Path) -> pd.DataFrame | None:
    """One row per day: the four quality scores, the threshold, pass/fail, row counts."""
    reports = quality_reports(root)
    if not reports:
        return None
    cols = ["day", *QUALITY_METRICS, "min_quality", "passed", "rows", "accepted", "quarantined"]
    frame = pd.DataFrame([{c: r[c] for c in cols} for r in reports])
    frame["failed_checks"] = ["; ".join(r.get("failed_checks", [])) for r in reports]
    return frame


def quarantine_frame(root: Path) -> pd.DataFrame | None:
    """Every quarantined row of every day, with its day and reason; None when none is built."""
    folder = root / "batches" / "quarantine"
    files = sorted(folder.glob("day_*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    parts = [pd.read_parquet(p).assign(day=int(p.stem.split("_")[1])) for p in files]
    frame = pd.concat(parts, ignore_index=True)
    seconds = pd.to_numeric(frame["timestamp"], errors="coerce")  # a bad row may hold text
    frame["date (UTC)"] = pd.to_datetime(seconds, unit="s", errors="coerce").dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    first = ["day", "reason", "date (UTC)"]
    return frame[first + [c for c in frame.columns if c not in first]]


# ---- A/B results ---------------------------------------------------------------------------


def abtest_days(root: Path) -> list[dict]:
    """metrics/abtest/day_NN.json documents in day order (empty before the first look)."""
    docs = [read_json(p) for p in day_files(root / "metrics" / "abtest").values()]
    return [d for d in docs if d is not None]


def summary(root: Path) -> dict | None:
    """metrics/summary.json (the report stage), or None before it ran."""
    return read_json(root / "metrics" / "summary.json")


def effects_frame(docs: list[dict], fit_from_day: int = 3) -> pd.DataFrame:
    """Per day and metric: cumulative B - A estimate and repeated CI of the decision design.

    The chart's y range is fitted to days >= fit_from_day: the first days' intervals (a few
    users) are many times wider, so their ends are clipped to that range (`clipped`).
    """
    rows = []
    for doc in docs:
        design = doc["decision"]["design"]
        for metric, s in doc["windows"]["cumulative"]["sequential"][design].items():
            low, high = s["repeated_ci"]
            rows.append(
                {"day": doc["day"], "metric": metric, "estimate": s["estimate"],
                 "ci_low": low, "ci_high": high, "significant": s["significant"]}
            )  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty or frame["day"].max() < fit_from_day:
        return frame.assign(clipped=False)
    later = frame[frame["day"] >= fit_from_day].groupby("metric")
    lo, hi = frame["metric"].map(later["ci_low"].min()), frame["metric"].map(later["ci_high"].max())
    clipped = (frame["ci_low"] < lo) | (frame["ci_high"] > hi)
    return frame.assign(
        ci_low=frame["ci_low"].clip(lower=lo), ci_high=frame["ci_high"].clip(upper=hi),
        estimate=frame["estimate"].clip(lower=lo, upper=hi), clipped=clipped,
    )  # fmt: skip


def _num(value):
    return value if value is not None else float("nan")


def pvalue_frame(doc: dict, window: str = "cumulative") -> pd.DataFrame:
    """One row per (design, metric) of a look: both units' estimates, CIs and p-values."""
    win = doc["windows"][window]
    designs = {"paired": win["paired"], "user-randomised": win["randomised"]["metrics"]}
    rows = []
    for design, metrics in designs.items():
        for metric, r in metrics.items():
            e = r["per_event"]
            rows.append(
                {"design": design, "metric": metric, "role": r["role"], "test": r.get("test"),
                 "estimate (B - A)": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                 "p_value": r["p_value"], "p_value_holm": r.get("p_value_holm"),
                 "p_value_bh": r.get("p_value_bh"), "per-event estimate": e["estimate"],
                 "per-event p": e["p_value"], "per-event p Holm": e.get("p_value_holm"),
                 "n_users": r["n_users"], "note": r["note"]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def sequential_frame(doc: dict) -> pd.DataFrame:
    """The look's sequential results per design and metric: repeated p, intervals, MDE."""
    rows = []
    for design, metrics in doc["windows"]["cumulative"]["sequential"].items():
        for metric, s in metrics.items():
            rows.append(
                {"design": design, "metric": metric, "estimate": s["estimate"],
                 "repeated_ci_low": s["repeated_ci"][0], "repeated_ci_high": s["repeated_ci"][1],
                 "simultaneous_ci_low": s["simultaneous_ci"][0],
                 "simultaneous_ci_high": s["simultaneous_ci"][1],
                 "repeated_p": s["repeated_p"], "repeated_p_holm": s["repeated_p_holm"],
                 "significant": s["significant"], "winner": s["winner"],
                 "MDE (relative to A)": _num(s["mde_relative"]),
                 "users for target lift": s["users_needed_for_target"],
                 "days for target lift": s["days_needed_for_target"]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def guardrail_frame(doc: dict) -> pd.DataFrame:
    """Guardrails of the decision design: estimate, repeated CI, margin, verdict."""
    design = doc["decision"]["design"]
    rows = [
        {"metric": m, "estimate (B - A)": g["estimate"], "repeated_ci_low": g["repeated_ci"][0],
         "repeated_ci_high": g["repeated_ci"][1], "margin": g["margin"], "verdict": g["verdict"]}
        for m, g in doc["windows"]["cumulative"]["guardrails"][design].items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def segment_frame(doc: dict) -> pd.DataFrame:
    """Exploratory segments (cumulative, paired): effect per group and unit, interaction p."""
    rows = []
    for name, seg in (doc.get("segments") or {}).items():
        first, second = seg["groups"]
        for metric, r in seg["metrics"].items():
            rows.append(
                {"segment": name, "metric": metric, "groups": f"{first} | {second}",
                 "users": f"{r[first]['n_users']} | {r[second]['n_users']}",
                 "effect 1st": r[first]["per_user"]["estimate"],
                 "p 1st": r[first]["per_user"]["p_value"],
                 "effect 2nd": r[second]["per_user"]["estimate"],
                 "p 2nd": r[second]["per_user"]["p_value"],
                 "interaction p (per user)": r["interaction_per_user"]["p_value"],
                 "interaction p (per event)": r["interaction_per_event"]["p_value"]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def srm_frame(doc: dict) -> pd.DataFrame:
    """Sample-ratio check of the user-randomised design (cumulative window, exact binomial)."""
    randomised = doc["windows"]["cumulative"]["randomised"]
    return pd.DataFrame([{"window": "cumulative", **randomised["srm"]}])


# ---- models --------------------------------------------------------------------------------


def eval_reports(root: Path) -> dict[str, dict]:
    """metrics/eval/<model>.json by model name (empty before any evaluation)."""
    folder = root / "metrics" / "eval"
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    reports = {p.stem: read_json(p) for p in paths}
    return {name: r for name, r in reports.items() if r is not None}


def eval_table(reports: dict[str, dict], part: str, group: str | None = None) -> pd.DataFrame:
    """Rows = models then baselines, columns = metrics of `part` (val/test), all or warm/cold."""
    rows, baselines = [], {}
    for name, report in reports.items():
        epochs = report.get("epochs", {})  # ranks and ratings may come from different epochs
        rows.append(
            {"model": name, **_metrics_of(report.get(part, {}), group),
             "rank epoch": epochs.get("ranking"), "rating epoch": epochs.get("rating")}
        )  # fmt: skip
        baselines.update(report.get("baselines", {}))  # identical in every model's file
    for name, report in baselines.items():
        rows.append({"model": f"{name} (baseline)", **_metrics_of(report.get(part, {}), group)})
    frame = pd.DataFrame(rows)
    columns = (*EVAL_METRICS, "n_events", "rank epoch", "rating epoch")
    return frame[["model", *[c for c in columns if c in frame]]]


def _metrics_of(part: dict, group: str | None) -> dict:
    scope = part.get(group, {}) if group else part
    return {k: v for k, v in scope.items() if not isinstance(v, dict)}


def learning_curves(root: Path) -> pd.DataFrame | None:
    """dvclive/<model>/plots/metrics/**/<name>.tsv as long rows: model, metric, step, value."""
    frames = []
    for tsv in sorted((root / "dvclive").glob("*/plots/metrics/**/*.tsv")):
        model = tsv.relative_to(root / "dvclive").parts[0]
        metric_dir = tsv.parent.relative_to(root / "dvclive" / model / "plots" / "metrics")
        metric = str(metric_dir / tsv.stem) if str(metric_dir) != "." else tsv.stem
        table = pd.read_csv(tsv, sep="\t")
        frames.append(
            pd.DataFrame({"model": model, "metric": metric, "step": table["step"],
                          "value": table[tsv.stem]})
        )  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else None


# ---- recommendations -----------------------------------------------------------------------

SPLIT_PARTS = ("train", "val", "test")
SECONDS_PER_DAY = 86_400.0


def all_events(root: Path) -> pd.DataFrame | None:
    """Every rating of the split (train, val, test), oldest first; None before the split."""
    folder = root / "artifacts" / "split"
    if not all((folder / f"{p}.parquet").is_file() for p in SPLIT_PARTS):
        return None
    frame = pd.concat([pd.read_parquet(folder / f"{p}.parquet") for p in SPLIT_PARTS])
    return frame.sort_values(["user_id", "timestamp", "item_id"], ignore_index=True)


def movies(root: Path) -> pd.DataFrame | None:
    """data/<dataset>/movies.csv indexed by item_id (title, year, genres), or None."""
    dataset = ((params(root) or {}).get("data") or {}).get("dataset", "ml-100k")
    path = root / "data" / dataset / "movies.csv"
    return pd.read_csv(path).set_index("item_id") if path.is_file() else None


def user_history(events: pd.DataFrame, titles: pd.DataFrame | None, user: int, n: int = 15):
    """The user's `n` most recent ratings, newest first: date, title, rating."""
    mine = events[events["user_id"] == user].tail(n).iloc[::-1]
    dates = pd.to_datetime(mine["timestamp"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    return pd.DataFrame(
        {
            "date (UTC)": dates.to_numpy(),
            "item_id": mine["item_id"].to_numpy(),
            "title": title_of(titles, mine["item_id"]),
            "rating": mine["rating"].to_numpy(),
        }
    )


def title_of(titles: pd.DataFrame | None, item_ids: pd.Series) -> list[str]:
    """Titles of raw item ids ("item <id>" where movies.csv is missing or lacks one)."""
    if titles is None:
        return [f"item {i}" for i in item_ids]
    found = titles["title"].reindex(item_ids.to_numpy())
    return [t if isinstance(t, str) else f"item {i}" for t, i in zip(found, item_ids, strict=True)]


def checkpoints(root: Path) -> list[str]:
    """Model names with a saved checkpoint models/<model>.pt."""
    folder = root / "models"
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def registry(root: Path) -> pd.DataFrame | None:
    """The model registry (GTO stages of the dvc.yaml artifacts): one row per model with each
    stage's version and which model is in prod; None outside a git repository."""
    from recsys.promote import PROD, model_in_stage, stages

    if not (root / ".git").exists():
        return None
    found = stages(root)
    in_prod = model_in_stage(root, PROD)
    rows = [{"model": name, **versions, "serving": name == in_prod}
            for name, versions in sorted(found.items())]  # fmt: skip
    return pd.DataFrame(rows, columns=["model", *sorted({s for v in found.values() for s in v}),
                                       "serving"])  # fmt: skip


def prod_model(root: Path) -> str | None:
    """The model assigned to the registry's prod stage (`recsys promote`), or None."""
    from recsys.promote import PROD, model_in_stage

    return model_in_stage(root, PROD) if (root / ".git").exists() else None


def serving_batch(history: pd.DataFrame, user_idx: int, item_idx, max_len: int) -> dict:
    """A one-query batch (models/base.py contract) whose history is the user's last events."""
    import numpy as np
    import torch

    hist = history.tail(max_len)
    n, pad = len(hist), max_len - len(hist)
    seconds = hist["timestamp"].to_numpy(dtype=np.int64)
    gaps = np.diff(seconds, prepend=seconds[:1]) / SECONDS_PER_DAY if n else np.zeros(0)
    items = item_idx(hist["item_id"].to_numpy())

    def right_aligned(values, dtype) -> torch.Tensor:  # (1, L), zeros on the left
        return torch.tensor(np.r_[np.zeros(pad), values], dtype=dtype)[None, :]

    return {
        "user": torch.tensor([user_idx]),
        "item": torch.tensor([0]),
        "target_gap": torch.tensor([0.0]),  # days: serve right after the last event
        "hist_item": right_aligned(items, torch.long),
        "hist_rating": right_aligned(hist["rating"].to_numpy(), torch.float32),
        "hist_gap": right_aligned(gaps, torch.float32),
        "hist_mask": right_aligned(np.ones(n), torch.bool),
    }


def id_map(root: Path, kind: str) -> pd.Series:
    """raw id -> dense index 1..n of artifacts/split/<kind>s.parquet."""
    table = pd.read_parquet(root / "artifacts" / "split" / f"{kind}s.parquet")
    return pd.Series(table["idx"].to_numpy(), index=table["raw_id"].to_numpy())


def recommend(root: Path, model_name: str, events: pd.DataFrame, user: int, k: int = 10):
    """Top-k unseen items for `user` from models/<model>.pt, with their scores."""
    import torch

    from recsys.config import load_params
    from recsys.training.checkpoint import load_model
    from recsys.training.scoring import history_len

    model, ckpt = load_model(root / "models" / f"{model_name}.pt")
    model.eval()
    users, items = id_map(root, "user"), id_map(root, "item")
    history = events[events["user_id"] == user]
    config = type(model).Config(**ckpt["config"])
    max_len = history_len(model, config, load_params(root / "params.yaml").train)

    def item_idx(raw):
        return items.reindex(raw).fillna(0).astype("int64").to_numpy()

    batch = serving_batch(history, int(users.get(user, 0)), item_idx, max_len)
    with torch.no_grad():
        scores = model.score_items(batch)[0].clone()  # (n_items + 1,)
    scores[0] = float("-inf")
    scores[torch.tensor(item_idx(history["item_id"].to_numpy()))] = float("-inf")  # seen
    top = torch.topk(scores, k)
    raw_of = pd.Series(items.index.to_numpy(), index=items.to_numpy())
    return pd.DataFrame(
        {"rank": range(1, k + 1), "item_id": raw_of.reindex(top.indices.numpy()).to_numpy(),
         "score": top.values.numpy()}
    )  # fmt: skip


def user_choices(root: Path) -> list[int] | None:
    """Users to pick from: those active in the test period first (most events first), then
    the rest by id; None before the split."""
    events = all_events(root)
    if events is None:
        return None
    test = pd.read_parquet(root / "artifacts" / "split" / "test.parquet", columns=["user_id"])
    active = test["user_id"].value_counts().index.tolist()
    rest = sorted(set(events["user_id"].unique()) - set(active))
    return [int(u) for u in active + rest]


def history_of(root: Path, user: int) -> pd.DataFrame:
    """The user's recent ratings with titles (see user_history)."""
    return user_history(all_events(root), movies(root), user)


def top_k(root: Path, model_name: str, user: int, k: int = 10) -> pd.DataFrame | str:
    """The model's top-k for the user with titles, or a one-line reason it cannot say."""
    from recsys.errors import RecsysError

    try:
        top = recommend(root, model_name, all_events(root), user, k)
    except (RecsysError, KeyError, RuntimeError, ImportError, ValueError) as err:
        return f"models/{model_name}.pt cannot be served: {type(err).__name__}: {err}"
    top.insert(2, "title", title_of(movies(root), top["item_id"]))
    return top
