"""A training run's state: early stopping, the best epoch, and the files that keep them.

`--state` (every epoch, for `--resume`) holds the whole run; `--out` holds the best epoch's
weights with everything needed to rebuild the model (recsys.training.checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recsys.errors import RecsysError
from recsys.training.checkpoint import read_checkpoint, save_checkpoint


@dataclass
class EarlyStopping:
    """Tracks the best value of the early-stop metric and epochs since it improved."""

    metric: str
    mode: str
    patience: int
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the best so far."""
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value
        )
        if better:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass
class RunState:
    """Everything a resumed run needs, saved every epoch."""

    stopper: EarlyStopping
    epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = False

    def end_epoch(
        self, epoch: int, metrics: dict[str, float], model: torch.nn.Module, last_epoch: bool
    ) -> None:
        """Judge an epoch by the early-stop metric; keep its weights when it is the best."""
        if self.stopper.metric not in metrics:
            raise RecsysError(
                f"train.early_stop_metric {self.stopper.metric!r}: no such val metric"
            )
        if self.stopper.update(metrics[self.stopper.metric], epoch):
            self.best_state = cpu_copy(model.state_dict())
            self.best_metrics = {k: v for k, v in metrics.items() if k.startswith("val/")}
        self.epoch = epoch
        self.finished = self.stopper.should_stop or last_epoch

    def save(self, path: Path, header: dict[str, Any], model, optimizer) -> None:
        """The whole run state (header: model, config, data and train params), for --resume."""
        save_checkpoint(
            path,
            {
                **header,
                "epoch": self.epoch,
                "finished": self.finished,
                "state_dict": cpu_copy(model.state_dict()),
                "optimizer": optimizer.state_dict() if optimizer else {},
                "rng": torch.get_rng_state(),
                "best_state": self.best_state,
                "best_metrics": self.best_metrics,
                "stopper": {
                    k: getattr(self.stopper, k) for k in ("best_value", "best_epoch", "bad_epochs")
                },
            },
        )

    def load(self, path: Path, header: dict[str, Any], model, optimizer) -> None:
        """Continue from a saved state; it must come from the same model, params and data."""
        saved = read_checkpoint(path)
        differs = [k for k, v in header.items() if saved.get(k) != v]
        if differs:
            raise RecsysError(
                f"{path}: saved with a different {', '.join(differs)}; run without --resume"
            )
        model.load_state_dict(saved["state_dict"])
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        for key, value in saved["stopper"].items():
            setattr(self.stopper, key, value)
        self.epoch, self.finished = saved["epoch"], saved["finished"]
        self.best_state, self.best_metrics = saved["best_state"], saved["best_metrics"]

    def save_best(self, path: Path, header: dict[str, Any]) -> None:
        """The best epoch's weights with everything needed to rebuild the model."""
        save_checkpoint(
            path,
            {
                **header,
                "state_dict": self.best_state,
                "epoch": self.stopper.best_epoch,
                "metrics": self.best_metrics,
            },
        )


def cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies (a state dict that later steps cannot change)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in tensors.items()}
