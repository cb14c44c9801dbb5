"""Epoch metrics to dvclive (DVC-tracked) and Weights & Biases (offline unless told otherwise).

W&B runs are named `<experiment>/<model>` and grouped by experiment: the experiment is the
DVC experiment name (`DVC_EXP_NAME`, set by `dvc exp run`), else `workspace`. Their files go
to wandb/ in $WANDB_DIR, else in the project's own folder, also when `dvc exp run --queue` /
`--temp` trains in a temporary copy under .dvc/tmp/exps/ that is deleted afterwards: `wandb
sync wandb/offline-run-*` uploads them later.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Metrics that differ from run to run on the same data. DVC hashes the dvclive folder (and
# dvc.lock is committed), so these go to `<live>.timing/` beside it, git-ignored, and to W&B.
RUN_DEPENDENT = ("train/step_s", "train/samples_per_s", "memory_mb")


class Tracker:
    """Epoch metrics to dvclive and W&B (either may be off); W&B never asks for a login."""

    def __init__(
        self, live_dir: Path | None, run_name: str, config: dict, resume: bool, use_wandb: bool
    ):
        self.lives = {}
        if live_dir is not None:
            from dvclive import Live

            for kind, path in (("tracked", live_dir), ("timing", Path(f"{live_dir}.timing"))):
                self.lives[kind] = Live(str(path), resume=resume, save_dvc_exp=False, dvcyaml=None)
        self.wandb_run = _start_wandb(run_name, config) if use_wandb else None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log one epoch's metrics at `step` (the epoch number)."""
        for kind, live in self.lives.items():
            live.step = step
            for key, value in metrics.items():
                if (key in RUN_DEPENDENT) == (kind == "timing"):
                    live.log_metric(key, value)
            live.make_summary()
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def close(self) -> None:
        """Finish both runs."""
        for live in self.lives.values():
            live.end()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def experiment_name() -> str:
    """The DVC experiment this run belongs to (`dvc exp run` sets DVC_EXP_NAME), or workspace."""
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def wandb_dir(cwd: Path | None = None) -> Path:
    """The folder W&B writes its wandb/ runs folder in, absolute: $WANDB_DIR, else the project;
    the project of a queued or temp experiment is the one holding its .dvc/tmp/exps/ copy."""
    if os.environ.get("WANDB_DIR"):
        return Path(os.environ["WANDB_DIR"]).resolve()
    here = (cwd or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def _start_wandb(model: str, config: dict):
    """An offline W&B run unless WANDB_MODE says otherwise; None when disabled or missing."""
    mode = os.environ.setdefault("WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        print("train: wandb is not installed; logging to dvclive only", file=sys.stderr)
        return None
    experiment, folder = experiment_name(), wandb_dir()
    folder.mkdir(parents=True, exist_ok=True)  # wandb.init's dir must exist
    return wandb.init(
        project="recsys", name=f"{experiment}/{model}", group=experiment, job_type=model,
        tags=[model], config={**config, "dvc_experiment": experiment}, mode=mode, dir=folder,
    )  # fmt: skip
