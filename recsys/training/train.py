"""`train@{model}` stage: train a registered model on the split's training events.

Adam on the model's own loss over batches pre-built as tensors (a seeded permutation per
epoch), early stopping on a validation metric (train.early_stop_metric), the full training
state saved every epoch (`--state`, continued with `--resume`), the best epoch's weights written
to `--out` (with the lowest-val-RMSE epoch's weights, which predict ratings, where that epoch is
another: recsys.training.state). A loss or gradient that is not finite stops the run with one
line and a debug state. Metrics go to dvclive and to W&B (offline unless WANDB_MODE says
otherwise; never needs a login).

The model's params section must hold lr, batch_size and epochs (weight_decay and max_len are
optional). Closed-form baselines (`mean`, `bias`) are fitted in one pass instead.

    python -m recsys.training.train --model ncf --split artifacts/split --out models/ncf.pt \
        --state checkpoints/ncf.pt --live dvclive/ncf

The same entry point trains data-parallel under torchrun (DDP: gloo on CPU, nccl on CUDA with
one GPU per process); batch_size stays the global batch, split across the processes, and the
result matches one process within floating-point tolerance (see recsys.training.distributed). Rank 0
validates, logs, writes --state and --out and prints the summary line:

    torchrun --nproc_per_node=2 -m recsys.training.train --model ss4rec --split artifacts/split \
        --out models/ss4rec.pt --state checkpoints/ss4rec.pt --live dvclive/ss4rec
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from recsys.config import Params, TrainParams, load_params
from recsys.errors import run_reporting_errors
from recsys.models.baselines import ClosedFormRecommender
from recsys.models.registry import model_class
from recsys.training.checkpoint import model_payload
from recsys.training.distributed import DistContext, context_from_env, process_group, run_on_main
from recsys.training.loop import EpochLoop, Hyper, hyper_of
from recsys.training.runtime import (
    job_device,
    keep_freed_memory,
    peak_memory_mb,
    seed_everything,
)
from recsys.training.scoring import history_len, metrics_of, score_queries
from recsys.training.state import EarlyStopping, RunState
from recsys.training.tensors import (
    EventLog,
    HistoryBy,
    QuerySet,
    SplitData,
    TensorSet,
    WindowSet,
    load_split,
    query_train_set,
    sequence_train_set,
)
from recsys.training.tracking import Tracker


def model_config(name: str, params: Params) -> BaseModel:
    """The model's Config filled from its params.yaml section (defaults when it has none)."""
    cls = model_class(name)
    section = getattr(params, name, None)
    return cls.Config() if section is None else cls.Config(**section.model_dump())


class Trainer:
    """One model's training run: builds the model and its data, runs epochs to early stopping.

    The parts with their own job: `loop` (EpochLoop: optimisation), `state` (RunState: early
    stopping, the best epoch, --state/--out files), validation by the evaluator's scoring code,
    and the Tracker passed to `run` (dvclive / W&B).
    """

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
        keep_freed_memory()
        self.name, self.config, self.data, self.train = model_name, config, data, train
        self.dist = dist or DistContext()
        self.device = job_device(train.device, self.dist)
        self.model = model_class(model_name)(config, data.spec)
        self.model.to(self.device)
        self.log = EventLog(data, history_by)
        self.max_len = history_len(self.model, config, train)
        self.val = QuerySet(self.log, self.log.rows_of("val"), self.max_len)
        self.train_set = self._train_set()
        self.loop = EpochLoop(
            name=model_name, model=self.model, train_set=self.train_set, hyper=self._hyper(),
            train=train, dist=self.dist, device=self.device, header=self.header(),
        )  # fmt: skip
        self.state = RunState(
            stopper=EarlyStopping(train.early_stop_metric, train.early_stop_mode, train.patience)
        )

    def _hyper(self) -> Hyper:
        if isinstance(self.model, ClosedFormRecommender):
            return Hyper(0.0, len(self.data.train), 1)
        return hyper_of(self.config, self.name)

    def _train_set(self) -> TensorSet | WindowSet:
        if self.model.training_kind == "sequence":
            stride = max(1, round(self.train.window_stride_frac * self.max_len))
            return sequence_train_set(self.log, self.max_len, stride).to(self.device)
        return query_train_set(self.data).to(self.device)

    def header(self) -> dict[str, Any]:
        """Model name, config, DataSpec and data fingerprint."""
        return model_payload(self.model, self.config, self.data.spec, self.data.fingerprint)

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
        state_header = {**self.header(), "train_params": self.train.model_dump(mode="json")}
        if resume and state_path is not None and state_path.is_file():
            self.state.load(state_path, state_header, self.model, self.loop.optimizer)
            if self.dist.is_main:
                print(
                    f"train {self.name}: resuming after epoch {self.state.epoch}", file=sys.stderr
                )
        debug_path = state_path.with_suffix(".nan.pt") if state_path else None
        epochs = self.loop.hyper.epochs
        while not self.state.finished and self.state.epoch < epochs:
            epoch = self.state.epoch + 1
            metrics = self.loop.run_epoch(epoch, debug_path) | self.validate()
            metrics["memory_mb"] = peak_memory_mb(self.device)
            last = epoch >= epochs or self.loop.closed_form
            self.state.end_epoch(epoch, metrics, self.model, last_epoch=last)
            if tracker is not None:
                tracker.log(metrics, step=epoch)
            if state_path is not None and self.dist.is_main:
                self.state.save(state_path, state_header, self.model, self.loop.optimizer)
        if self.dist.is_main:
            self.state.save_best(out, self.header())
        return self.state


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
        prog="python -m recsys.training.train",
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
            rating = ""
            if state.rating_epoch != stopper.best_epoch:
                rating = (
                    f", ratings from epoch {state.rating_epoch} "
                    f"({state.rating.metric} {state.rating.best_value:.4f})"
                )
            print(
                f"train {args.model}: {state.epoch} epoch(s), best epoch {stopper.best_epoch} "
                f"({stopper.metric} {stopper.best_value:.4f}){rating} -> {args.out}"
            )
        return 0

    return run_reporting_errors(_prog(args.model), body)


def _prog(model_name: str) -> str:
    """`train <model>` for error lines, tagged with the rank on ranks > 0 of a torchrun job."""
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    return f"train {model_name}" if rank == "0" else f"train {model_name} [rank {rank}]"


if __name__ == "__main__":
    sys.exit(main())
