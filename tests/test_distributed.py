"""torchrun / DDP training: shard and loss-scale arithmetic worked out by hand, then real
`torchrun --nproc_per_node=2 -m recsys.training.train` runs against one process on a tiny split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from recsys.config import SplitParams
from recsys.errors import RecsysError
from recsys.etl.split import temporal_split
from recsys.io import write_parquet
from recsys.training.distributed import (
    DistContext,
    all_reduce_mean,
    broadcast_object,
    check_batch_size,
    context_from_env,
    device_of,
    loss_scale,
    run_on_main,
    shard,
    shard_batches,
)
from recsys.training.tensors import EventLog, WindowSet, load_split, sequence_train_set
from tests.conftest import PROJECT_ROOT, tiny_ratings

TORCHRUN_ENV = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


# ---- units -------------------------------------------------------------------------------
def test_context_comes_from_torchrun_env_and_defaults_to_one_process():
    assert context_from_env({}) == DistContext() and context_from_env({"WORLD_SIZE": "1"}).is_main
    ctx = context_from_env(TORCHRUN_ENV)
    assert (ctx.rank, ctx.world, ctx.local_rank, ctx.enabled, ctx.is_main) == (1, 2, 1, True, False)
    with pytest.raises(RecsysError, match="start with torchrun"):
        context_from_env({"WORLD_SIZE": "2"})


def test_shards_are_contiguous_and_together_the_global_batch():
    idx = torch.tensor([7, 3, 9, 0, 5, 2, 8, 1, 6, 4])
    parts = [shard(idx, DistContext(rank=r, world=3)) for r in range(3)]
    assert [p.tolist() for p in parts] == [[7, 3, 9, 0], [5, 2, 8], [1, 6, 4]]
    assert shard(idx, DistContext()) is idx  # one process: the whole batch


def test_a_batch_with_fewer_rows_than_ranks_is_skipped_on_every_rank():
    batches = list(torch.arange(9).split(4))  # 4, 4, 1 rows
    expected = {0: [[0, 1], [4, 5]], 1: [[2, 3], [6, 7]]}
    for rank, parts in expected.items():
        pairs = list(shard_batches(batches, DistContext(rank=rank, world=2)))
        assert [idx.tolist() for idx, _ in pairs] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        assert [part.tolist() for _, part in pairs] == parts
    assert len(list(shard_batches(batches, DistContext()))) == 3  # one process keeps it


def test_scaled_shard_losses_average_to_the_global_mean():
    # three windows with 1, 1 and 4 target positions; per-target losses 2 | 4 | 1, 1, 1, 5
    mask = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    per_target = torch.tensor([[2.0, 0, 0, 0], [4.0, 0, 0, 0], [1.0, 1, 1, 5]])
    target_window = mask.nonzero(as_tuple=True)[0]  # one target per True, by window
    windows = WindowSet(
        {"hist_item": torch.zeros(3, 4, dtype=torch.long)},
        {"window": target_window} | {k: torch.zeros(6) for k in ("col", "item", "rating")},
    )
    idx = torch.arange(3)
    global_mean = per_target[mask].mean()  # 14 / 6 = 7/3
    shard_means, scales = [], []
    for rank in range(2):
        part = shard(idx, DistContext(rank=rank, world=2))  # [0, 1] (2 targets), [2] (4 targets)
        shard_means.append(per_target[part][mask[part]].mean().item())
        scales.append(loss_scale(windows.n_targets(part), windows.n_targets(idx), world=2))
    assert global_mean.item() == pytest.approx(7 / 3)
    assert shard_means == [3.0, 2.0] and scales == pytest.approx([2 / 3, 4 / 3])
    # what DDP's gradient average sees; the unweighted mean of shard means would be 2.5
    assert (shard_means[0] * scales[0] + shard_means[1] * scales[1]) / 2 == pytest.approx(7 / 3)


def test_one_process_collectives_are_the_identity():
    ctx = DistContext()
    assert all_reduce_mean(torch.tensor(2.5), ctx).item() == 2.5
    assert broadcast_object({"val/rmse": 1.0}, ctx) == {"val/rmse": 1.0}
    assert run_on_main(lambda: 42, ctx) == 42


def test_more_processes_than_the_batch_is_a_one_line_error():
    check_batch_size(DistContext(rank=0, world=4), 4, "ss4rec")
    with pytest.raises(RecsysError, match=r"4 processes but ss4rec.batch_size is 2 .*at most 2"):
        check_batch_size(DistContext(rank=0, world=4), 2, "ss4rec")


def test_more_processes_than_gpus_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    ctx = context_from_env(TORCHRUN_ENV)
    assert device_of(ctx, torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(RecsysError, match="2 processes on this host but it has 1 CUDA"):
        device_of(ctx, torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_of(ctx, torch.device("cuda")) == torch.device("cuda", 1)


# ---- real torchrun -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A split folder and a params.yaml with a tiny SS4Rec (no dropout: runs comparable)."""
    root = tmp_path_factory.mktemp("ddp")
    parts = temporal_split(tiny_ratings(n_users=60, n_items=50, per_user=20), SplitParams())
    for name in ("train", "val", "test", "users", "items"):
        write_parquet(root / "split" / f"{name}.parquet", parts[name])
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["train"].update(device="cpu", num_threads=1, eval_batch_size=256)
    params["ss4rec"].update(
        d_model=16, n_layers=1, d_state=4, d_conv=2, expand=1, dropout=0.0, max_len=10,
        batch_size=10, epochs=2,
    )  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def train_cmd(root: Path, out: str, launcher: list[str], params: str = "params.yaml"):
    """`<launcher> -m recsys.training.train --model ss4rec` in `root`, outputs in `root/out`."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--model", "ss4rec", "--split", "split", "--params", params]
    args += ["--out", f"{out}/ss4rec.pt", "--state", f"{out}/state.pt", "--live", f"{out}/live"]
    cmd = [sys.executable, *launcher, "-m", "recsys.training.train", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=240)


def torchrun(n: int, log_dir: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "--log-dir", log_dir, "--tee", "3"]  # fmt: skip


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one(workdir: Path):
    one = train_cmd(workdir, "one", [])
    assert one.returncode == 0, one.stderr
    two = train_cmd(workdir, "two", torchrun(2, "two_logs"))
    assert two.returncode == 0, two.stderr

    # a last global batch of one window cannot be sharded: DDP skips it, one process does not
    windows = sequence_train_set(EventLog(load_split(workdir / "split")), 10, 5)
    assert len(windows) % 10 != 1, "pick an ss4rec.batch_size that leaves no 1-window batch"
    a = torch.load(workdir / "one" / "ss4rec.pt", weights_only=True)
    b = torch.load(workdir / "two" / "ss4rec.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys() and a["epoch"] == b["epoch"]
    for key, weight in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], weight, atol=1e-5, rtol=0, msg=key)
    assert b["metrics"] == pytest.approx(a["metrics"], abs=1e-6)
    summaries = [
        json.loads((workdir / d / "live" / "metrics.json").read_text()) for d in ("one", "two")
    ]
    assert summaries[1]["train"] == pytest.approx(summaries[0]["train"], rel=1e-5)  # global loss

    # rank 0 alone wrote, logged and printed
    assert sorted(p.name for p in (workdir / "two").iterdir()) == [
        "live", "live.timing", "ss4rec.pt", "state.pt",
    ]  # fmt: skip
    assert not list(workdir.glob("*.pt")) and not list(workdir.glob("wandb"))
    assert two.stdout.count("train ss4rec: 2 epoch(s)") == 1
    (rank1_stdout,) = (workdir / "two_logs").rglob("attempt_0/1/stdout.log")
    (rank0_stdout,) = (workdir / "two_logs").rglob("attempt_0/0/stdout.log")
    assert "train ss4rec" in rank0_stdout.read_text() and rank1_stdout.read_text() == ""


@pytest.mark.slow
def test_more_processes_than_the_batch_fails_with_one_line_per_rank(workdir: Path):
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["ss4rec"]["batch_size"] = 1
    (workdir / "params_b1.yaml").write_text(yaml.safe_dump(params))
    proc = train_cmd(workdir, "b1", torchrun(2, "b1_logs"), params="params_b1.yaml")
    assert proc.returncode != 0
    (rank0_stderr,) = (workdir / "b1_logs").rglob("attempt_0/0/stderr.log")
    assert rank0_stderr.read_text().strip().splitlines() == [
        "train ss4rec: error: 2 processes but ss4rec.batch_size is 1 (the global batch, split "
        "across processes); start at most 1 process(es) or raise ss4rec.batch_size"
    ]
    assert not (workdir / "b1").exists()
