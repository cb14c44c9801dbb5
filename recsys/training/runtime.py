"""Where and how a run executes: the device, seeds and threads, peak memory."""

from __future__ import annotations

import ctypes
import random
import resource

import numpy as np
import torch

from recsys.config import TrainParams
from recsys.errors import RecsysError
from recsys.training.distributed import DistContext, device_of


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


def keep_freed_memory() -> None:
    """Let glibc serve large tensors from its heap and keep what is freed, for reuse.

    By default every tensor over the mmap threshold is fresh memory from the kernel and is
    returned on free, so a training step page-faults through its (L, B, D, N) scan states
    and temporaries again every time (measured: a quarter of SS4Rec's step). The process's
    RSS then stays at its peak. Values are unchanged; a no-op where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters (malloc.h)
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)
