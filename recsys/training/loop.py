"""The optimisation loop: Adam on a model's own loss, one seeded (and sharded) pass an epoch.

Every rank of a torchrun job takes the same seeded permutation of the training set and trains
on its own shard of each global batch (recsys.training.distributed). A loss or gradient that is
not finite stops the run with one line and, when a debug path is given, a debug state.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from tqdm import tqdm

from recsys.config import TrainParams
from recsys.errors import RecsysError
from recsys.models.base import Recommender
from recsys.models.baselines import ClosedFormRecommender
from recsys.training.checkpoint import save_checkpoint
from recsys.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    check_batch_size,
    ddp_loss,
    loss_scale,
    rank_seed,
    shard_batches,
)
from recsys.training.state import cpu_copy
from recsys.training.tensors import TensorSet, WindowSet, iterate_batches


@dataclass
class Hyper:
    """The optimisation settings read from the model's section."""

    lr: float
    batch_size: int
    epochs: int
    weight_decay: float = 0.0


def hyper_of(config: BaseModel, name: str) -> Hyper:
    """lr, batch_size, epochs (and weight_decay) from a model config, or a one-line error."""
    missing = [k for k in ("lr", "batch_size", "epochs") if not hasattr(config, k)]
    if missing:
        raise RecsysError(f"params.yaml: section {name!r} needs {', '.join(missing)} to train")
    return Hyper(
        lr=float(config.lr),
        batch_size=int(config.batch_size),
        epochs=int(config.epochs),
        weight_decay=float(getattr(config, "weight_decay", 0.0)),
    )


class EpochLoop:
    """Trains `model` on `train_set`, one epoch a call; closed-form models fit in one pass."""

    def __init__(
        self,
        *,
        name: str,
        model: Recommender,
        train_set: TensorSet | WindowSet,
        hyper: Hyper,
        train: TrainParams,
        dist: DistContext,
        device: torch.device,
        header: dict[str, Any],
    ):
        self.name, self.model, self.train_set, self.hyper = name, model, train_set, hyper
        self.train, self.dist, self.device, self.header = train, dist, device, header
        self.closed_form = isinstance(model, ClosedFormRecommender)
        self.optimizer = None
        if not self.closed_form:
            check_batch_size(dist, hyper.batch_size, name)
            self.optimizer = torch.optim.Adam(
                model.parameters(), lr=hyper.lr, weight_decay=hyper.weight_decay
            )
        self.loss_fn = self._loss_fn()

    def _loss_fn(self):
        cuda = self.device.type == "cuda"
        if (self.train.amp or self.train.compile) and not cuda:
            print("train: amp / compile apply to CUDA only; running plain on CPU", file=sys.stderr)
        plain = self.model.loss
        if self.dist.enabled and not self.closed_form:
            plain = ddp_loss(self.model, self.device)  # forward = model.loss, gradients synced
        loss_fn = torch.compile(plain) if self.train.compile and cuda else plain
        if not (self.train.amp and cuda):
            return loss_fn

        def autocast_loss(batch):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return loss_fn(batch).float()

        return autocast_loss

    def run_epoch(
        self, epoch: int, debug_path: Path | None, max_seconds: float | None = None
    ) -> dict[str, float]:
        """One pass over the training set; returns train/* metrics (of the global batches).

        max_seconds (one process only; for benchmarks) ends the pass early after the step that
        crosses it; train/samples then counts the targets trained on.
        """
        if max_seconds is not None and self.dist.enabled:
            raise RecsysError("a time-capped epoch is for one process, not a torchrun job")
        if self.closed_form:
            return self._fit_closed_form()
        self.model.train()
        if self.dist.rank > 0:  # its own dropout / negative-sampling stream; rank 0 keeps its own
            torch.manual_seed(rank_seed(self.train.seed, self.dist.rank, epoch))
        sums = {"loss": 0.0, "grad_norm": 0.0, "step_s": 0.0, "samples": 0.0}
        bar = tqdm(
            self._batches(epoch), desc=f"{self.name} epoch {epoch}",
            disable=None if self.dist.is_main else True, leave=False,
        )  # fmt: skip
        began, steps = time.perf_counter(), 0
        for step, (idx, part) in enumerate(bar):
            if max_seconds is not None and time.perf_counter() - began > max_seconds:
                break
            started = time.perf_counter()
            n_targets = self.train_set.n_targets(idx)  # of the global batch
            loss, grad_norm = self._step(part, n_targets, epoch, step, debug_path)
            sums["step_s"] += time.perf_counter() - started
            sums["loss"] += loss
            sums["grad_norm"] += grad_norm
            sums["samples"] += n_targets
            steps += 1
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        n = max(steps, 1)
        return {
            "train/loss": sums["loss"] / n,
            "train/grad_norm": sums["grad_norm"] / n,
            "train/step_s": sums["step_s"] / n,
            "train/samples_per_s": sums["samples"] / max(sums["step_s"], 1e-9),
            "train/samples": sums["samples"],
        }

    def _fit_closed_form(self) -> dict[str, float]:
        everything = self.train_set.batch(torch.arange(len(self.train_set), device=self.device))
        self.model.fit(everything)
        loss = float(self.model.loss(everything))
        return {"train/loss": loss, "train/samples": float(len(self.train_set))}

    def _batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(global batch, this rank's shard) index pairs: one seeded permutation on every rank."""
        seed = self.train.seed * 1_000_003 + epoch
        batches = iterate_batches(
            len(self.train_set), self.hyper.batch_size, shuffle=True, seed=seed
        )
        return list(shard_batches(batches, self.dist))

    def _step(
        self, part: torch.Tensor, n_global: int, epoch: int, step: int, debug_path: Path | None
    ) -> tuple[float, float]:
        """One update on the global batch; this rank computes the loss of its shard `part`."""
        batch = self.train_set.batch(part)
        loss = self.loss_fn(batch)
        if self.dist.enabled:  # DDP averages gradients over ranks: weight by share of targets
            loss = loss * loss_scale(self.train_set.n_targets(part), n_global, self.dist.world)
        global_loss = all_reduce_mean(loss, self.dist)  # the global batch's mean, on every rank
        if not torch.isfinite(global_loss):
            self._abort_not_finite("loss", float(global_loss), batch, epoch, step, debug_path)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.train.max_grad_norm or math.inf
        # of the synced gradients: the same value, and so the same decision, on every rank
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not torch.isfinite(grad_norm):
            self._abort_not_finite(
                "gradient norm", float(grad_norm), batch, epoch, step, debug_path
            )
        self.optimizer.step()
        return float(global_loss), float(grad_norm)

    def _abort_not_finite(self, what, value, batch, epoch, step, debug_path) -> None:
        where = ""
        if debug_path is not None:
            if self.dist.is_main:  # rank 0's shard of the batch
                save_checkpoint(
                    debug_path,
                    {
                        **self.header,
                        "epoch": epoch,
                        "step": step,
                        "state_dict": cpu_copy(self.model.state_dict()),
                        "batch": cpu_copy(batch),
                    },
                )
            barrier(self.dist)  # no rank exits (and gets rank 0 killed) before it is written
            where = f"; debug state (weights + batch) saved to {debug_path}"
        raise RecsysError(
            f"{self.name}: {what} is {value} at epoch {epoch}, step {step + 1}{where}; try a lower "
            f"{self.name}.lr, train.max_grad_norm > 0 or train.amp: false"
        )
