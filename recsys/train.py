"""`train@{model}` stage: train a registered model on the split's training events.

Adam on the model's own loss over batches pre-built as tensors (a seeded permutation per
epoch), early stopping on a validation metric (train.early_stop_metric), the full training
state saved every epoch (`--state`, continued with `--resume`), the best epoch's weights written
to `--out`. A loss or gradient that is not finite stops the run with one line and a debug state.
Metrics go to dvclive and to W&B (offline unless WANDB_MODE says otherwise; never needs a login).

The model's params section must hold lr, batch_size and epochs (weight_decay and max_len are
optional). Closed-form baselines (`mean`, `bias`) are fitted in one pass instead.

    python -m recsys.train --model ncf --split artifacts/split --out models/ncf.pt \
        --state checkpoints/ncf.pt --live dvclive/ncf

The same entry point trains data-parallel under torchrun (DDP: gloo on CPU, nccl on CUDA with
one GPU per process); batch_size stays the global batch, split across the processes, and the
result matches one process within floating-point tolerance (see recsys.distributed). Rank 0
validates, logs, writes --state and --out and prints the summary line:

    torchrun --nproc_per_node=2 -m recsys.train --model ss4rec --split artifacts/split \
        --out models/ss4rec.pt --state checkpoints/ss4rec.pt --live dvclive/ss4rec
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from tqdm import tqdm

from recsys.batches import (
    EventLog,
    HistoryBy,
    QuerySet,
    SplitData,
    TensorSet,
    iterate_batches,
    load_split,
    query_train_set,
    sequence_train_set,
)
from recsys.checkpoint import model_payload, read_checkpoint, save_checkpoint
from recsys.config import Params, TrainParams, load_params
from recsys.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    check_batch_size,
    context_from_env,
    ddp_loss,
    device_of,
    loss_scale,
    process_group,
    rank_seed,
    run_on_main,
    shard_batches,
)
from recsys.errors import RecsysError, run_reporting_errors
from recsys.evaluate import history_len, metrics_of, score_queries
from recsys.models.base import Recommender
from recsys.models.baselines import ClosedFormRecommender
from recsys.models.registry import model_class


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


def model_config(name: str, params: Params) -> BaseModel:
    """The model's Config filled from its params.yaml section (defaults when it has none)."""
    cls = model_class(name)
    section = getattr(params, name, None)
    return cls.Config() if section is None else cls.Config(**section.model_dump())


def resolve_device(choice: str) -> torch.device:
    """cpu, cuda, or auto (cuda when available); asking for cuda without one is an error."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RecsysError("train.device is cuda but no CUDA device is available (use auto)")
    return torch.device(choice)


def job_device(choice: str, dist: DistContext) -> torch.device:
    """resolve_device, then this process's own GPU (cuda:LOCAL_RANK) in a torchrun job."""
    return device_of(dist, resolve_device(choice))


def seed_everything(train: TrainParams) -> None:
    """Seeds and thread count: the same params give the same bytes on the same machine."""
    if train.num_threads > 0:
        torch.set_num_threads(train.num_threads)
    random.seed(train.seed)
    np.random.seed(train.seed)
    torch.manual_seed(train.seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocations on a GPU, the process's max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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

    epoch: int = 0
    stopper: EarlyStopping | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = False


class Trainer:
    """One model's training run; see the module docstring."""

    def __init__(
        self,
        model_name: str,
        config: BaseModel,
        data: SplitData,
        train: TrainParams,
        history_by: HistoryBy = "time",
        dist: DistContext | None = None,
    ):
        seed_everything(train)
        self.name, self.config, self.data, self.train = model_name, config, data, train
        self.dist = dist or DistContext()
        self.device = job_device(train.device, self.dist)
        self.model: Recommender = model_class(model_name)(config, data.spec)
        self.model.to(self.device)
        self.log = EventLog(data, history_by)
        self.val = QuerySet(
            self.log, self.log.rows_of("val"), history_len(self.model, config, train)
        )
        self.closed_form = isinstance(self.model, ClosedFormRecommender)
        self.hyper = (
            Hyper(0.0, len(data.train), 1) if self.closed_form else hyper_of(config, model_name)
        )
        if not self.closed_form:
            check_batch_size(self.dist, self.hyper.batch_size, model_name)
        self.train_set = self._train_set()
        self.optimizer = None
        if not self.closed_form:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=self.hyper.lr, weight_decay=self.hyper.weight_decay
            )
        self.loss_fn = self._loss_fn()
        self.state = RunState(
            stopper=EarlyStopping(train.early_stop_metric, train.early_stop_mode, train.patience)
        )

    def _train_set(self) -> TensorSet:
        if self.model.training_kind == "sequence":
            return sequence_train_set(
                self.log, history_len(self.model, self.config, self.train)
            ).to(self.device)
        return query_train_set(self.data).to(self.device)

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

    # ---- checkpoints -------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Model name, config, DataSpec and data fingerprint."""
        return model_payload(self.model, self.config, self.data.spec, self.data.fingerprint)

    def save_state(self, path: Path) -> None:
        """The whole run state, for --resume."""
        stopper = self.state.stopper
        save_checkpoint(
            path,
            {
                **self.header(),
                "train_params": self.train.model_dump(mode="json"),
                "epoch": self.state.epoch,
                "finished": self.state.finished,
                "state_dict": _cpu(self.model.state_dict()),
                "optimizer": self.optimizer.state_dict() if self.optimizer else {},
                "rng": torch.get_rng_state(),
                "best_state": self.state.best_state,
                "best_metrics": self.state.best_metrics,
                "stopper": {
                    k: getattr(stopper, k) for k in ("best_value", "best_epoch", "bad_epochs")
                },
            },
        )

    def load_state(self, path: Path) -> None:
        """Continue from a saved state; it must come from the same model, params and data."""
        saved = read_checkpoint(path)
        expected = {**self.header(), "train_params": self.train.model_dump(mode="json")}
        differs = [k for k, v in expected.items() if saved.get(k) != v]
        if differs:
            raise RecsysError(
                f"{path}: saved with a different {', '.join(differs)}; run without --resume"
            )
        self.model.load_state_dict(saved["state_dict"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        for key, value in saved["stopper"].items():
            setattr(self.state.stopper, key, value)
        self.state.epoch, self.state.finished = saved["epoch"], saved["finished"]
        self.state.best_state, self.state.best_metrics = saved["best_state"], saved["best_metrics"]

    def save_final(self, path: Path) -> None:
        """The best epoch's weights with everything needed to rebuild the model."""
        save_checkpoint(
            path,
            {
                **self.header(),
                "state_dict": self.state.best_state,
                "epoch": self.state.stopper.best_epoch,
                "metrics": self.state.best_metrics,
            },
        )

    # ---- epochs ------------------------------------------------------------------------
    def train_epoch(
        self, epoch: int, debug_path: Path | None, max_seconds: float | None = None
    ) -> dict[str, float]:
        """One pass over the training set; returns train/* metrics (of the global batches).

        max_seconds (one process only; for benchmarks) ends the pass early after the step that
        crosses it; train/samples then counts the targets trained on.
        """
        if max_seconds is not None and self.dist.enabled:
            raise RecsysError("a time-capped epoch is for one process, not a torchrun job")
        if self.closed_form:
            everything = self.train_set.batch(torch.arange(len(self.train_set), device=self.device))
            self.model.fit(everything)
            loss = float(self.model.loss(everything))
            return {"train/loss": loss, "train/samples": float(len(self.train_set))}
        self.model.train()
        if self.dist.rank > 0:  # its own dropout / negative-sampling stream; rank 0 keeps its own
            torch.manual_seed(rank_seed(self.train.seed, self.dist.rank, epoch))
        sums = {"loss": 0.0, "grad_norm": 0.0, "step_s": 0.0, "samples": 0.0}
        batches = self._epoch_batches(epoch)
        bar = tqdm(
            batches, desc=f"{self.name} epoch {epoch}",
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

    def _epoch_batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
                self._save_debug_state(debug_path, batch, epoch, step)
            barrier(self.dist)  # no rank exits (and gets rank 0 killed) before it is written
            where = f"; debug state (weights + batch) saved to {debug_path}"
        raise RecsysError(
            f"{self.name}: {what} is {value} at epoch {epoch}, step {step + 1}{where}; try a lower "
            f"{self.name}.lr, train.max_grad_norm > 0 or train.amp: false"
        )

    def _save_debug_state(self, debug_path: Path, batch, epoch: int, step: int) -> None:
        save_checkpoint(
            debug_path,
            {
                **self.header(),
                "epoch": epoch,
                "step": step,
                "state_dict": _cpu(self.model.state_dict()),
                "batch": _cpu(batch),
            },
        )

    def validate(self) -> dict[str, float]:
        """val/* metrics by the evaluator's own code; rank 0 scores, every rank gets them."""
        return run_on_main(self._validate_here, self.dist)

    def _validate_here(self) -> dict[str, float]:
        scored = score_queries(
            self.model, self.val, self.train.eval_batch_size, self.device, desc=f"{self.name} val"
        )
        overall = metrics_of(scored)
        keys = ("rmse", "mae", "hr@10", "ndcg@10", "mrr@10")
        return {f"val/{k}": overall[k] for k in keys if k in overall}

    def run(
        self, *, out: Path, state_path: Path | None, tracker: Tracker | None, resume: bool
    ) -> RunState:
        """Train until the epoch budget or early stopping; write the best weights to `out`."""
        if resume and state_path is not None and state_path.is_file():
            self.load_state(state_path)  # on every rank
            if self.dist.is_main:
                print(
                    f"train {self.name}: resuming after epoch {self.state.epoch}", file=sys.stderr
                )
        debug_path = state_path.with_suffix(".nan.pt") if state_path else None
        while not self.state.finished and self.state.epoch < self.hyper.epochs:
            epoch = self.state.epoch + 1
            metrics = self.train_epoch(epoch, debug_path) | self.validate()
            metrics["memory_mb"] = peak_memory_mb(self.device)
            self._end_epoch(epoch, metrics)
            if tracker is not None:
                tracker.log(metrics, step=epoch)
            if state_path is not None and self.dist.is_main:
                self.save_state(state_path)
        if self.dist.is_main:
            self.save_final(out)
        return self.state

    def _end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        stopper = self.state.stopper
        if stopper.metric not in metrics:
            raise RecsysError(f"train.early_stop_metric {stopper.metric!r}: no such val metric")
        if stopper.update(metrics[stopper.metric], epoch):
            self.state.best_state = _cpu(self.model.state_dict())
            self.state.best_metrics = {k: v for k, v in metrics.items() if k.startswith("val/")}
        self.state.epoch = epoch
        self.state.finished = stopper.should_stop or epoch >= self.hyper.epochs or self.closed_form


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in tensors.items()}


def train_model(
    *,
    model_name: str,
    config: BaseModel,
    data: SplitData,
    train: TrainParams,
    out: Path,
    state_path: Path | None = None,
    live_dir: Path | None = None,
    resume: bool = False,
    history_by: HistoryBy = "time",
    use_wandb: bool = True,
) -> RunState:
    """Train `model_name` with `config` on `data`; the best weights go to `out`.

    Under torchrun (WORLD_SIZE > 1) every process calls this; only rank 0 logs and writes.
    """
    dist = context_from_env()
    with process_group(dist, job_device(train.device, dist)):
        trainer = Trainer(model_name, config, data, train, history_by, dist=dist)
        run_config = {
            "model": model_name,
            **config.model_dump(mode="json"),
            "train": train.model_dump(),
            **({"world_size": dist.world} if dist.enabled else {}),
        }
        main = dist.is_main
        tracker = Tracker(
            live_dir if main else None, model_name, run_config, resume, use_wandb and main
        )
        try:
            return trainer.run(out=out, state_path=state_path, tracker=tracker, resume=resume)
        finally:
            tracker.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, print one summary line."""
    parser = argparse.ArgumentParser(
        prog="python -m recsys.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--model", required=True, help="registry name: ncf, ss4rec, bias, mean")
    parser.add_argument("--split", type=Path, required=True, help="the split folder")
    parser.add_argument("--out", type=Path, required=True, help="best-epoch checkpoint to write")
    parser.add_argument("--state", type=Path, default=None, help="run state saved every epoch")
    parser.add_argument("--live", type=Path, default=None, help="dvclive folder (default: none)")
    parser.add_argument("--resume", action="store_true", help="continue from --state if present")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    def body() -> int:
        params = load_params(args.params)
        state = train_model(
            model_name=args.model, config=model_config(args.model, params),
            data=load_split(args.split), train=params.train, out=args.out,
            state_path=args.state, live_dir=args.live, resume=args.resume,
        )  # fmt: skip
        stopper = state.stopper
        if context_from_env().is_main:
            print(
                f"train {args.model}: {state.epoch} epoch(s), best epoch {stopper.best_epoch} "
                f"({stopper.metric} {stopper.best_value:.4f}) -> {args.out}"
            )
        return 0

    return run_reporting_errors(_prog(args.model), body)


def _prog(model_name: str) -> str:
    """`train <model>` for error lines, tagged with the rank on ranks > 0 of a torchrun job."""
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    return f"train {model_name}" if rank == "0" else f"train {model_name} [rank {rank}]"


if __name__ == "__main__":
    sys.exit(main())
