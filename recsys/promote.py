"""Promotion in the model registry: the models are DVC artifacts (dvc.yaml `artifacts:`),
their stages GTO git tags (`<model>#<stage>#N`). `recsys promote` assigns the A/B winner to a
stage (`prod`)."""

from __future__ import annotations

import json
from pathlib import Path

from recsys.config import PARAMS_FILE, load_params
from recsys.errors import RecsysError

SUMMARY = Path("metrics/summary.json")
PROD = "prod"


def ab_winner(summary: dict, primary_metric: str) -> str | None:
    """The model the A/B summary says wins on the primary metric, None when neither does."""
    winner = summary["final"][primary_metric].get("winner")
    return {"A": summary["model_a"], "B": summary["model_b"]}.get(winner)


def stages(repo: str | Path = ".") -> dict[str, dict[str, str]]:
    """Each registered model's stages and the version in each: {"ss4rec": {"prod": "v0.0.1"}}."""
    import gto.api

    return {name: dict(row["stage"]) for name, row in gto.api.show(str(repo)).items()}


def model_in_stage(repo: str | Path = ".", stage: str = PROD) -> str | None:
    """The model whose latest assignment is `stage` (the most recent of them), else None."""
    import gto.api

    latest = None
    for name, in_stages in stages(repo).items():
        if stage not in in_stages:
            continue
        (found,) = gto.api.find_versions_in_stage(str(repo), name, stage)
        when = max(a.created_at for a in found.assignments)
        if latest is None or when > latest[1]:
            latest = (name, when)
    return latest[0] if latest else None


def promote(repo: str | Path = ".", stage: str = PROD) -> tuple[str, str]:
    """Assign the A/B winner (metrics/summary.json, abtest.primary_metric) to `stage` at HEAD;
    return (model, what happened). No winner yet is an error that says what to run."""
    import gto.api

    repo = Path(repo)
    path = repo / SUMMARY
    if not path.is_file():
        raise RecsysError(f"{path}: no A/B summary yet; run `dvc repro report` first")
    summary = json.loads(path.read_text())
    primary = load_params(repo / PARAMS_FILE).abtest.primary_metric
    model = ab_winner(summary, primary)
    if model is None:
        raise RecsysError(
            f"{path}: no significant difference on {primary} after "
            f"{summary['days_analysed']} day(s); nothing promoted (run more days)"
        )
    if model_in_stage(repo, stage) == model:
        return model, f"{model} is already in {stage}"
    gto.api.assign(str(repo), model, stage, ref="HEAD", message=f"A/B winner on {primary}")
    return model, f"{model} assigned to {stage} (git tag {model}#{stage}#…; push it with the tags)"
