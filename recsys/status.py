"""`recsys status`: dataset, rows, what is built and what is stale."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from recsys.config import load_params
from recsys.pipeline import StageState, stage_states


class Status(BaseModel):
    """What `recsys status` reports (also its `--json` schema)."""

    dataset: str
    ratings_file: str
    n_ratings: int | None
    split: dict | None
    stages: list[StageState]
    next_step: str


def count_rows(csv_path: Path) -> int | None:
    """Data rows of a CSV (lines minus the header), or None when the file is missing."""
    if not csv_path.is_file():
        return None
    with open(csv_path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1


def next_step(n_ratings: int | None, dataset: str, stages: list[StageState]) -> str:
    """The command that moves the pipeline forward from here."""
    if n_ratings is None:
        return f"recsys fetch --dataset {dataset}   (or `recsys synth` for synthetic data)"
    if any(s.stale or not s.built for s in stages):
        return "dvc repro"
    return "nothing: the pipeline is up to date"


def collect_status(root: Path = Path(".")) -> Status:
    """Gather the status of the pipeline in `root`."""
    dataset = load_params(root / "params.yaml").data.dataset
    ratings = root / "data" / dataset / "ratings.csv"
    meta_path = root / "artifacts" / "split" / "meta.json"
    split = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    n_ratings = count_rows(ratings)
    stages = [s for s in stage_states(root) if not s.name.endswith(".dvc")]
    return Status(
        dataset=dataset,
        ratings_file=str(ratings),
        n_ratings=n_ratings,
        split=split,
        stages=stages,
        next_step=next_step(n_ratings, dataset, stages),
    )


def render_status(status: Status) -> str:
    """A human-readable table of the status."""
    rows = f"{status.n_ratings:,} ratings" if status.n_ratings is not None else "missing"
    lines = [f"dataset   {status.dataset}  ({status.ratings_file}: {rows})"]
    if status.split:
        parts = ", ".join(f"{k} {status.split[k]['n_ratings']:,}" for k in ("train", "val", "test"))
        lines.append(f"split     {parts}")
    lines.append("")
    lines.append(f"{'stage':<20} {'built':<6} {'state':<9} outputs")
    for s in status.stages:
        state = "stale" if s.stale else "current"
        lines.append(f"{s.name:<20} {'yes' if s.built else 'no':<6} {state:<9} {', '.join(s.outs)}")
        lines.extend(f"{'':<20}   - {change}" for change in s.changes[:4])
    lines.append("")
    lines.append(f"next      {status.next_step}")
    return "\n".join(lines)
