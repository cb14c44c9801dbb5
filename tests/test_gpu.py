"""The GPU path (configs/gpu.yaml): CUDA device, bf16 autocast, torch.compile, mamba-ssm.

The CUDA tests skip, with their reason, on a machine without a GPU; the preset and the
"no GPU" error are checked everywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from recsys.config import SplitParams, SS4RecParams, apply_preset, load_params
from recsys.errors import RecsysError
from recsys.etl.split import temporal_split
from recsys.training.checkpoint import load_model
from recsys.training.runtime import resolve_device
from recsys.training.tensors import split_from_frames
from recsys.training.train import train_model
from tests.conftest import PROJECT_ROOT, tiny_ratings

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
SMALL = SS4RecParams(d_model=16, n_layers=1, d_state=8, max_len=10, batch_size=32, epochs=1)


def test_gpu_preset_asks_for_cuda_amp_and_compile(tmp_path: Path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    before = load_params(tmp_path / "params.yaml")
    params = apply_preset("gpu", tmp_path / "params.yaml", PROJECT_ROOT / "configs")
    assert (params.train.device, params.train.amp, params.train.compile) == ("cuda", True, True)
    assert (params.ss4rec, params.ncf, params.data) == (before.ss4rec, before.ncf, before.data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(RecsysError, match=r"^train\.device is cuda but no CUDA device"):
        resolve_device("cuda")


@needs_cuda
def test_ss4rec_trains_on_cuda_with_amp_and_compile_like_on_cpu(tmp_path: Path):
    from recsys.config import TrainParams

    parts = temporal_split(tiny_ratings(n_users=60, per_user=20), SplitParams())
    data = split_from_frames(parts["train"], parts["val"], parts["test"])
    runs = {}
    for device, fast in (("cpu", False), ("cuda", True)):
        train = TrainParams(device=device, amp=fast, compile=fast, num_threads=1)
        state = train_model(
            model_name="ss4rec", config=SMALL, data=data, train=train,
            out=tmp_path / f"{device}.pt", use_wandb=False,
        )  # fmt: skip
        runs[device] = state.best_metrics
    model, _ = load_model(tmp_path / "cuda.pt")  # a CUDA checkpoint loads on the CPU
    assert next(model.parameters()).device.type == "cpu"
    # bf16 autocast changes the numbers a little, not the model: same init, same batches
    assert runs["cuda"]["val/rmse"] == pytest.approx(runs["cpu"]["val/rmse"], abs=0.05)


@needs_cuda
def test_mamba_kernel_is_used_for_cuda_tensors():
    from recsys.models.scans import cuda_kernel_available

    if not cuda_kernel_available():
        pytest.skip("mamba_ssm is not installed (pip install -e .[cuda])")
    from recsys.models import scans

    calls = []
    original = scans._cuda_selective_scan
    scans._cuda_selective_scan = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        u = torch.randn(2, 8, 5, device="cuda")
        scans.selective_scan(
            u, torch.rand_like(u), -torch.rand(5, 4, device="cuda"),  # u (B, L, D), A (D, N)
            torch.randn(2, 8, 4, device="cuda"), torch.randn(2, 8, 4, device="cuda"),  # (B, L, N)
        )  # fmt: skip
    finally:
        scans._cuda_selective_scan = original
    assert calls == [1]
