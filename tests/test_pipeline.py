"""A real `dvc repro` of the pipeline in a git repository in tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.data.canonical import write_canonical
from tests.conftest import dvc, git, tiny_ratings

pytestmark = pytest.mark.slow


def recsys_cli(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", *args], cwd=repo, capture_output=True, text=True
    )


def use_tiny_dataset(repo: Path) -> pd.DataFrame:
    """Write a tiny canonical dataset, track data/ with DVC, point params at it, commit."""
    ratings = tiny_ratings(n_users=40, per_user=10)
    movies = pd.DataFrame({"item_id": range(1, 41), "title": "Film (1990)", "genres": "Drama"})
    write_canonical(ratings, movies, repo / "data" / "tiny")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["dataset"] = "tiny"
    params["etl"]["n_days"] = 2  # two daily batch stages instead of 20: a faster repro
    params["etl"]["days"] = {"1": "01", "2": "02"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert dvc(repo, "add", "-q", "data").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tiny dataset")
    return ratings


def test_dvc_repro_builds_the_split_and_is_idempotent(dvc_repo: Path):
    ratings = use_tiny_dataset(dvc_repo)

    repro = dvc(dvc_repo, "repro")
    assert repro.returncode == 0, repro.stderr
    meta = json.loads((dvc_repo / "artifacts/split/meta.json").read_text())
    assert sum(meta[k]["n_ratings"] for k in ("train", "val", "test")) == len(ratings)
    assert meta["test"]["n_ratings"] == round(len(ratings) * 0.1)
    lock = (dvc_repo / "dvc.lock").read_bytes()

    status = dvc(dvc_repo, "status", "--json")
    assert json.loads(status.stdout) == {}  # data.dvc and every stage up to date
    again = dvc(dvc_repo, "repro")
    assert "didn't change, skipping" in again.stdout
    assert (dvc_repo / "dvc.lock").read_bytes() == lock

    report = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)
    assert report["n_ratings"] == len(ratings)
    assert [(s["name"], s["built"], s["stale"]) for s in report["stages"]] == [
        ("split", True, False),
        ("batch@1", True, False),
        ("batch@2", True, False),
    ]
    assert report["etl"]["days_done"] == 2
    assert report["etl"]["records_processed"] == meta["test"]["n_ratings"]
    assert report["etl"]["coverage_pct"] == 100.0


def test_changed_param_makes_split_stale_and_repro_gives_same_bytes_back(dvc_repo: Path):
    use_tiny_dataset(dvc_repo)
    assert dvc(dvc_repo, "repro").returncode == 0
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "built")
    first = (dvc_repo / "dvc.lock").read_text()

    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["split"]["test_frac"] = 0.2
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    report = json.loads(recsys_cli(dvc_repo, "status", "--json").stdout)
    assert report["stages"][0]["stale"] is True
    assert report["stages"][0]["changes"] == ["changed deps: params.yaml: split.test_frac modified"]

    git(dvc_repo, "checkout", "-q", "--", "params.yaml")
    assert dvc(dvc_repo, "repro").returncode == 0
    assert (dvc_repo / "dvc.lock").read_text() == first
    assert git(dvc_repo, "status", "--porcelain") == ""
