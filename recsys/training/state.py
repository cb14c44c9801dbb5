"""A training run's state: early stopping, the best epoch, and the files that keep them.

`--state` (every epoch, for `--resume`) holds the whole run; `--out` holds the best epoch's
weights with everything needed to rebuild the model (recsys.training.checkpoint).

Each head is chosen on val by its own metric: ranks come from the epoch with the best
early-stop metric, predicted ratings from the epoch with the lowest val/rmse. When the two
differ, `--out` also holds the rating epoch's weights (`rating_state_dict`); a rating head
that keeps training while the ranking improves overfits (SS4Rec on ml-100k: val RMSE lowest
at epoch 13, 0.9735, and 0.9808 at epoch 20, the best NDCG@10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recsys.errors import RecsysError
from recsys.training.checkpoint import read_checkpoint, save_checkpoint

RATING_METRIC = "val/rmse"  # chooses the epoch whose weights predict ratings


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
    rating: EarlyStopping = field(  # the lowest val/rmse; it never stops the run
        default_factory=lambda: EarlyStopping(RATING_METRIC, "min", patience=1)
    )
    rating_state: dict[str, torch.Tensor] = field(default_factory=dict)

    def end_epoch(
        self, epoch: int, metrics: dict[str, float], model: torch.nn.Module, last_epoch: bool
    ) -> None:
        """Judge an epoch by the early-stop metric, and by val/rmse for the rating head; keep
        its weights for each it is the best by."""
        if self.stopper.metric not in metrics:
            raise RecsysError(
                f"train.early_stop_metric {self.stopper.metric!r}: no such val metric"
            )
        if self.stopper.update(metrics[self.stopper.metric], epoch):
            self.best_state = cpu_copy(model.state_dict())
            self.best_metrics = {k: v for k, v in metrics.items() if k.startswith("val/")}
        if RATING_METRIC in metrics and self.rating.update(metrics[RATING_METRIC], epoch):
            self.rating_state = cpu_copy(model.state_dict())
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
                "stopper": _stopper_dict(self.stopper),
                "rating": _stopper_dict(self.rating),
                "rating_state": self.rating_state,
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
        if "rating" not in saved:
            raise RecsysError(f"{path}: saved by an older recsys; run without --resume")
        model.load_state_dict(saved["state_dict"])
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        for stopper, key in ((self.stopper, "stopper"), (self.rating, "rating")):
            for name, value in saved[key].items():
                setattr(stopper, name, value)
        self.epoch, self.finished = saved["epoch"], saved["finished"]
        self.best_state, self.best_metrics = saved["best_state"], saved["best_metrics"]
        self.rating_state = saved["rating_state"]

    @property
    def rating_epoch(self) -> int:
        """The epoch whose weights predict ratings: the lowest val/rmse so far (the best
        epoch where no val/rmse was measured)."""
        return self.rating.best_epoch if self.rating_state else self.stopper.best_epoch

    def save_best(self, path: Path, header: dict[str, Any]) -> None:
        """The best epoch's weights with everything needed to rebuild the model, and the
        rating epoch's weights where that epoch is another one."""
        rating = {}
        if self.rating_epoch != self.stopper.best_epoch:
            # keyed by the very strings of best_state: pickle's memo then writes the same
            # bytes whether the two dicts came from one run or from a resumed one
            rating["rating_state_dict"] = {key: self.rating_state[key] for key in self.best_state}
        save_checkpoint(
            path,
            {
                **header,
                "state_dict": self.best_state,
                "epoch": self.stopper.best_epoch,
                "metrics": self.best_metrics,
                "rating_epoch": self.rating_epoch,
                "rating_metrics": {RATING_METRIC: self.rating.best_value},
                **rating,
            },
        )


def _stopper_dict(stopper: EarlyStopping) -> dict[str, Any]:
    return {k: getattr(stopper, k) for k in ("best_value", "best_epoch", "bad_epochs")}


def cpu_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies (a state dict that later steps cannot change)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in tensors.items()}
