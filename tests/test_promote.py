"""`recsys promote`: the A/B winner to the prod stage as a GTO tag, in a real git repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import data
from recsys.promote import model_in_stage, stages
from tests.app_fixture import recorded_abtest
from tests.conftest import PROJECT_ROOT, dvc, git


def promote(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", "promote"], cwd=repo, capture_output=True, text=True
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo with this project's dvc.yaml (the artifacts) and params.yaml, one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(PROJECT_ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline")
    return repo


def write_summary(repo: Path, winner: str | None) -> None:
    summary = recorded_abtest()["summary"]  # 20 real looks: B = ss4rec wins on ndcg@10
    summary["final"]["ndcg@10"]["winner"] = winner
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "summary.json").write_text(json.dumps(summary))


def test_promote_tags_the_ab_winner_prod_once(repo: Path):
    write_summary(repo, "B")
    first = promote(repo)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ss4rec assigned to prod")
    assert git(repo, "tag").split() == ["ss4rec#prod#1", "ss4rec@v0.0.1"]
    assert stages(repo) == {"ss4rec": {"prod": "v0.0.1"}}
    assert model_in_stage(repo) == data.prod_model(repo) == "ss4rec"
    table = data.registry(repo)
    assert table.to_dict("records") == [{"model": "ss4rec", "prod": "v0.0.1", "serving": True}]

    again = promote(repo)
    assert again.stdout == "ss4rec is already in prod\n"
    assert git(repo, "tag").split() == ["ss4rec#prod#1", "ss4rec@v0.0.1"]

    write_summary(repo, "A")  # A wins later: ncf takes prod, the most recent assignment
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "A wins")
    assert promote(repo).stdout.startswith("ncf assigned to prod")
    assert data.prod_model(repo) == "ncf"


def test_no_winner_promotes_nothing(repo: Path):
    write_summary(repo, None)
    proc = promote(repo)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "recsys promote: error: metrics/summary.json: no significant difference on ndcg@10 "
        "after 20 day(s); nothing promoted (run more days)"
    ]
    assert git(repo, "tag") == ""
    assert data.prod_model(repo) is None


def test_dvc_artifacts_get_fetches_the_promoted_model(tmp_path: Path):
    """`dvc artifacts get . ss4rec` from the local cache, no remote: it needs a version tag,
    which `recsys promote` registers; before that DVC cannot find the artifact."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(PROJECT_ROOT / "params.yaml", repo / "params.yaml")
    git(repo, "init", "-q", "-b", "main")
    assert dvc(repo, "init", "-q").returncode == 0
    (repo / "dvc.yaml").write_text(
        "artifacts:\n  ss4rec:\n    path: models/ss4rec.pt\n    type: model\n"
    )
    (repo / "models").mkdir()
    (repo / "models" / "ss4rec.pt").write_bytes(b"weights of the trained model")
    added = dvc(repo, "add", "-q", "models/ss4rec.pt")
    assert added.returncode == 0, added.stderr
    write_summary(repo, "B")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trained")

    before = dvc(repo, "artifacts", "get", ".", "ss4rec", "-o", str(tmp_path / "a.pt"))
    assert before.returncode != 0 and "Unable to find artifact 'ss4rec'" in before.stderr
    assert promote(repo).returncode == 0
    for args, out in ((), "latest.pt"), (("--stage", "prod"), "prod.pt"):
        got = dvc(repo, "artifacts", "get", ".", "ss4rec", *args, "-o", str(tmp_path / out))
        assert got.returncode == 0, got.stderr
        assert (tmp_path / out).read_bytes() == b"weights of the trained model"
