"""W&B runs of queued DVC experiments: kept in the project, named and grouped by experiment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from recsys.training.tracking import wandb_dir

RUN = """
from recsys.training.tracking import Tracker
tracker = Tracker(None, "ncf", {"lr": 0.01}, resume=False, use_wandb=True)
tracker.log({"val/ndcg@10": 0.25}, step=1)
tracker.close()
"""


def test_wandb_dir_is_the_project_even_from_a_queued_experiment_copy(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    copy = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpk2x9" / "sub"
    assert wandb_dir(copy) == tmp_path / "proj"
    assert wandb_dir(tmp_path / "proj") == tmp_path / "proj"
    monkeypatch.setenv("WANDB_DIR", "relative/runs")
    assert wandb_dir(copy) == Path.cwd() / "relative" / "runs"  # made absolute


def test_offline_run_of_a_queued_experiment_lands_in_the_project(tmp_path: Path):
    """A real offline W&B run started where `dvc exp run --queue` trains (a temp copy of the
    project under .dvc/tmp/exps/) is written to the project's wandb/, named after the exp."""
    project = tmp_path / "proj"
    workspace = project / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    env = {k: v for k, v in __import__("os").environ.items() if k != "WANDB_DIR"}
    env |= {"WANDB_MODE": "offline", "DVC_EXP_NAME": "fuzzy-lamb", "WANDB_SILENT": "true",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", RUN], cwd=workspace, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (workspace / "wandb").exists()
    (run,) = (project / "wandb").glob("offline-run-*")
    (record,) = run.glob("run-*.wandb")  # what `wandb sync` uploads: name, group, config
    content = record.read_bytes()
    assert b"fuzzy-lamb/ncf" in content and b"dvc_experiment" in content
