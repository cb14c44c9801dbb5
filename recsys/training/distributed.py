"""torchrun / DDP plumbing for `recsys.training.train`: process group, batch shards, collectives.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK (and LOCAL_WORLD_SIZE); without them, or with
WORLD_SIZE 1, every helper here is a no-op and training runs the single-process code path.

Exactness: every rank draws the same global permutation and takes a contiguous shard of each
global batch. A model's loss is a mean over its batch's targets, and DDP averages gradients
over ranks, so a rank's loss is scaled by n_targets(shard) · world / n_targets(global batch):
the averaged gradient is then the gradient of the global batch's mean loss. A global batch
with fewer rows than ranks (only the last one can be) is skipped on every rank.

Randomness: every rank seeds and builds the same model (DDP also broadcasts rank 0's weights);
rank 0 keeps the single-process RNG stream, ranks > 0 reseed each epoch (`rank_seed`) so
their dropout masks and sampled negatives differ from rank 0's, and a resumed run repeats them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from recsys.errors import RecsysError
from recsys.models.base import Batch, Recommender

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job; the default is a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes on this host (torchrun's --nproc_per_node)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env(env: Mapping[str, str] = os.environ) -> DistContext:
    """The job torchrun describes in `env`; a single process when WORLD_SIZE is absent or 1."""
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return DistContext()
        rank, local_rank = int(env["RANK"]), int(env["LOCAL_RANK"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", local_rank + 1))
    except (KeyError, ValueError) as err:
        raise RecsysError(
            f"WORLD_SIZE is set but {err} is missing or not a number; start with torchrun"
        ) from None
    return DistContext(rank=rank, world=world, local_rank=local_rank, local_world=local_world)


def device_of(ctx: DistContext, device: torch.device) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA job (one GPU per process); `device` otherwise."""
    if not ctx.enabled or device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if ctx.local_world > count:  # the same answer on every rank of this host
        raise RecsysError(
            f"torchrun started {ctx.local_world} processes on this host but it has {count} "
            f"CUDA device(s); use --nproc_per_node {count} (one GPU per process) "
            "or train.device: cpu"
        )
    return torch.device("cuda", ctx.local_rank)


@contextmanager
def process_group(ctx: DistContext, device: torch.device) -> Iterator[None]:
    """The torch.distributed group of a torchrun job (nccl on CUDA, gloo on CPU), then its end."""
    if not ctx.enabled:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world)  # env:// rendezvous
    try:
        yield
    finally:
        dist.destroy_process_group()


def check_batch_size(ctx: DistContext, batch_size: int, section: str) -> None:
    """A global batch must give every rank at least one row."""
    if ctx.world > batch_size:
        raise RecsysError(
            f"{ctx.world} processes but {section}.batch_size is {batch_size} (the global batch, "
            f"split across processes); start at most {batch_size} process(es) or raise "
            f"{section}.batch_size"
        )


def shard(idx: torch.Tensor, ctx: DistContext) -> torch.Tensor | None:
    """This rank's contiguous part of a global batch's indices; None: skip it on every rank."""
    if not ctx.enabled:
        return idx
    if len(idx) < ctx.world:
        return None
    return idx.tensor_split(ctx.world)[ctx.rank]  # sizes differ by at most one


def shard_batches(
    batches: Iterable[torch.Tensor], ctx: DistContext
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(global batch, this rank's shard) pairs; a batch too small to shard is skipped."""
    for idx in batches:
        part = shard(idx, ctx)
        if part is not None:
            yield idx, part


def loss_scale(n_shard: int, n_global: int, world: int) -> float:
    """Factor on a shard's mean loss that makes DDP's gradient average the global batch's."""
    return n_shard * world / max(n_global, 1)


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean over ranks of a (detached) tensor; the tensor itself in one process."""
    if not ctx.enabled:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / ctx.world


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others mention)."""
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Rank 0's `obj` (any picklable value) on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """`fn()` run by rank 0 and its value broadcast; its failure fails every rank, no hang."""
    if not ctx.enabled:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if ctx.is_main:
        try:
            outcome = (True, fn())
        except Exception as err:
            broadcast_object((False, str(err)), ctx)
            raise
    ok, value = broadcast_object(outcome, ctx)
    if not ok:
        raise RecsysError(f"rank 0 failed: {value}")
    return value


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """A torch seed for rank > 0 in an epoch: its own dropout / negative-sampling stream."""
    return (seed * 1_000_003 + epoch) * 1_009 + rank


class LossModule(nn.Module):
    """A model whose forward is its training loss, so DDP can wrap it."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


def ddp_loss(model: Recommender, device: torch.device) -> DistributedDataParallel:
    """The model's loss under DDP (gradients averaged over ranks during backward).

    static_graph: the set of parameters a loss uses is fixed (SS4Rec's empty_state is for
    queries only; NCF's rank head idles at rank_weight 0), so DDP finds the unused ones in the
    first step instead of searching the graph every step (find_unused_parameters).
    """
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(LossModule(model), device_ids=device_ids, static_graph=True)
