"""Shared fixtures: a real git + DVC repository holding a copy of this project, in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What a pipeline run needs from the project (the package source is a DVC dependency).
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", "recsys", "configs")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No analytics, no W&B, no user-level caches; the venv's tools first on PATH."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    for key, value in {"NAME": "recsys tests", "EMAIL": "tests@example.invalid"}.items():
        monkeypatch.setenv(f"GIT_AUTHOR_{key}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{key}", value)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`, failing the test with git's message on error."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run this interpreter's DVC in `repo`."""
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True
    )


def tiny_ratings(n_users: int = 30, n_items: int = 40, per_user: int = 12, seed: int = 0):
    """A small ratings frame (unique user-item pairs, many same-second ties), unsorted."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    items = np.concatenate(
        [rng.choice(n_items, per_user, replace=False) + 1 for _ in range(n_users)]
    )
    timestamps = 880_000_000 + rng.integers(0, n_users * per_user // 4, users.size) * 60
    ratings = rng.integers(1, 6, users.size).astype(float)
    return pd.DataFrame(
        {"user_id": users, "item_id": items, "rating": ratings, "timestamp": timestamps}
    )


def make_dvc_repo(repo: Path) -> Path:
    """A git repository at `repo` with `dvc init`, this project's pipeline files, one commit."""
    repo.mkdir()
    for name in PIPELINE_FILES:
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, repo / name)
    git(repo, "init", "-q", "-b", "main")
    assert dvc(repo, "init", "-q").returncode == 0
    assert dvc(repo, "config", "core.analytics", "false").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline")
    return repo


def use_pipeline_days(repo: Path, n_days: int) -> None:
    """Run the pipeline over `n_days` days (fewer stages, faster tests): dvc.yaml's `vars: days`
    and etl.n_days / abtest.n_days in params.yaml; not committed."""
    import yaml

    from recsys.config import pipeline_days

    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["vars"] = [{"days": pipeline_days(n_days)}]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["etl"]["n_days"] = params["abtest"]["n_days"] = n_days
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git repository with `dvc init`, this project's pipeline files and one commit."""
    return make_dvc_repo(tmp_path / "repo")


def with_targets(windows: dict, first_events: bool = True) -> dict:
    """A hand-built window batch in the sequence contract (recsys.models.base).

    `windows` holds hist_* and next_* (B, L) keys: next_item[b, t] follows position t where
    next_mask & hist_mask. These become flat targets (row, col = t); with `first_events`,
    every window that opens with left padding also gets its oldest real event as a target of
    the empty state (col -1), as sequence_train_set gives a user's first event.
    """
    import torch

    mask = windows["hist_mask"]
    valid = windows["next_mask"] & mask
    row, col = valid.nonzero(as_tuple=True)
    item, rating = windows["next_item"][valid], windows["next_rating"][valid]
    if first_events:
        opens = mask.any(dim=1) & ~mask[:, 0]
        oldest = (mask.shape[1] - mask.sum(dim=1)).clamp(max=mask.shape[1] - 1)
        first_rows = opens.nonzero(as_tuple=True)[0]
        row = torch.cat([row, first_rows])
        col = torch.cat([col, torch.full_like(first_rows, -1)])
        item = torch.cat([item, windows["hist_item"][first_rows, oldest[first_rows]]])
        rating = torch.cat([rating, windows["hist_rating"][first_rows, oldest[first_rows]]])
    kept = {k: v for k, v in windows.items() if k not in ("next_item", "next_rating", "next_mask")}
    return kept | {
        "target_row": row,
        "target_col": col,
        "target_item": item,
        "target_rating": rating.float(),
    }


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API (SQLite and PREFECT_HOME in tmp) for every flow test, with the
    `daily-etl` concurrency limit created once, as `python -m flows.serve` does."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    from flows.daily_etl import ensure_limit

    home = tmp_path_factory.mktemp("prefect_home")
    settings = {PREFECT_HOME: home, PREFECT_SERVER_ANALYTICS_ENABLED: False}
    with temporary_settings(settings), prefect_test_harness(server_startup_timeout=120):
        ensure_limit()
        yield
