"""Epoch metrics to dvclive (DVC-tracked) and Weights & Biases (offline unless told otherwise)."""

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


def _start_wandb(run_name: str, config: dict):
    """An offline W&B run unless WANDB_MODE says otherwise; None when disabled or missing."""
    mode = os.environ.setdefault("WANDB_MODE", "offline")
    if mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        print("train: wandb is not installed; logging to dvclive only", file=sys.stderr)
        return None
    return wandb.init(project="recsys", name=run_name, config=config, mode=mode)
