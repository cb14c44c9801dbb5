"""The trainer's own logic on a tiny split: early stopping, resume, NaN guard, checkpoints.

`Toy` is a test-only Recommender (allowed: these are unit tests of the trainer, not of a model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import Section, SplitParams, TrainParams
from recsys.errors import RecsysError, run_reporting_errors
from recsys.etl.split import temporal_split
from recsys.models.base import DataSpec, Recommender
from recsys.models.registry import MODELS
from recsys.training.checkpoint import load_model, load_rater
from recsys.training.tensors import SplitData, split_from_frames
from recsys.training.train import train_model
from tests.conftest import tiny_ratings

CRASH_AT_STEP: dict[str, int | None] = {"step": None}  # set by a test to simulate a kill


class ToyConfig(Section):
    lr: float = 0.05
    batch_size: int = 16
    epochs: int = 3
    dim: int = 4
    drift: bool = False  # push a rating offset away from the data: val RMSE worsens each epoch
    nan_after_steps: int = 0  # 0 = never


class Toy(Recommender):
    name = "toy"
    Config = ToyConfig

    def __init__(self, config: ToyConfig, data: DataSpec):
        super().__init__()
        self.config, self.data, self.steps = config, data, 0
        self.user = nn.Embedding(data.n_users + 1, config.dim)
        self.item = nn.Embedding(data.n_items + 1, config.dim)
        self.offset = nn.Parameter(torch.zeros(()))
        self.dropout = nn.Dropout(0.5)  # uses the global RNG: resume must restore it

    def query_state(self, batch):
        return batch["user"]

    def rate(self, state, item):
        dot = (self.dropout(self.user(state)) * self.item(item)).sum(-1)
        return self.data.rating_mean + self.offset + dot

    def rank_scores(self, state):
        scores = self.user(state) @ self.item.weight.T  # (B, n_items + 1)
        scores[:, 0] = -torch.inf
        return scores

    def loss(self, batch):
        self.steps += 1
        if CRASH_AT_STEP["step"] == self.steps:
            raise RuntimeError("simulated kill")
        loss = F.mse_loss(self.predict_rating(batch), batch["rating"])
        if self.config.drift:
            loss = loss + (self.offset - 100.0) ** 2
        if self.config.nan_after_steps and self.steps >= self.config.nan_after_steps:
            loss = loss * torch.nan
        return loss


@pytest.fixture(autouse=True)
def _register_toy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(MODELS, "toy", "tests.test_train:Toy")
    CRASH_AT_STEP["step"] = None


@pytest.fixture(scope="module")
def tiny_split() -> SplitData:
    parts = temporal_split(tiny_ratings(), SplitParams())
    return split_from_frames(parts["train"], parts["val"], parts["test"])


TRAIN = TrainParams(device="cpu", num_threads=1, patience=2)


def run(data: SplitData, tmp: Path, tag: str, config=None, train=TRAIN, **kwargs):
    return train_model(
        model_name="toy", config=config or ToyConfig(), data=data, train=train,
        out=tmp / f"{tag}.pt", state_path=tmp / f"{tag}.state.pt", **kwargs,
    )  # fmt: skip


def test_same_params_give_byte_identical_checkpoints(tiny_split, tmp_path):
    run(tiny_split, tmp_path, "a")
    run(tiny_split, tmp_path, "b")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert (tmp_path / "a.state.pt").read_bytes() == (tmp_path / "b.state.pt").read_bytes()
    run(tiny_split, tmp_path, "c", train=TRAIN.model_copy(update={"seed": 1}))
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "c.pt").read_bytes()


def test_checkpoint_round_trip_with_weights_only(tiny_split, tmp_path):
    run(tiny_split, tmp_path, "a")
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["model"] == "toy" and ckpt["data_fingerprint"] == tiny_split.fingerprint
    rebuilt = Toy(Toy.Config(**ckpt["config"]), DataSpec(**ckpt["data"]))
    rebuilt.load_state_dict(ckpt["state_dict"])
    loaded, _ = load_model(tmp_path / "a.pt")
    batch = {"user": torch.tensor([1, 2, 0]), "item": torch.tensor([3, 1, 2])}
    rebuilt.eval()
    assert torch.equal(rebuilt.predict_rating(batch), loaded.predict_rating(batch))
    assert rebuilt.data == tiny_split.spec


def test_early_stopping_keeps_the_best_epoch(tiny_split, tmp_path):
    train = TRAIN.model_copy(update={"early_stop_metric": "val/rmse", "early_stop_mode": "min"})
    state = run(tiny_split, tmp_path, "a", config=ToyConfig(drift=True, epochs=10), train=train)
    assert (state.epoch, state.stopper.best_epoch) == (3, 1)  # 1 best + patience 2 worse
    final = torch.load(tmp_path / "a.pt", weights_only=True)
    last = torch.load(tmp_path / "a.state.pt", weights_only=True)
    assert final["epoch"] == 1 and last["epoch"] == 3
    assert final["state_dict"]["offset"] < last["state_dict"]["offset"]
    assert final["metrics"]["val/rmse"] == pytest.approx(state.stopper.best_value)


def test_ratings_come_from_the_epoch_with_the_lowest_val_rmse(tiny_split, tmp_path):
    # drift: val RMSE (and MAE) worsen every epoch, so the lowest RMSE is epoch 1 while an
    # early stop on the *highest* val/mae keeps the last epoch: the two epochs differ
    by_mae = TRAIN.model_copy(
        update={"early_stop_metric": "val/mae", "early_stop_mode": "max", "patience": 5}
    )
    run(tiny_split, tmp_path, "a", config=ToyConfig(drift=True, epochs=3), train=by_mae)
    model, ckpt = load_model(tmp_path / "a.pt")
    assert (ckpt["epoch"], ckpt["rating_epoch"]) == (3, 1)
    rater = load_rater(ckpt)
    assert rater is not None and rater.offset < model.offset
    epoch_1 = torch.load(tmp_path / "a.state.pt", weights_only=True)["rating_state"]
    assert torch.equal(rater.offset, epoch_1["offset"])
    assert ckpt["rating_metrics"]["val/rmse"] < ckpt["metrics"]["val/rmse"]

    # early stopping on val/rmse itself: one epoch for both, stored once
    by_rmse = TRAIN.model_copy(update={"early_stop_metric": "val/rmse", "early_stop_mode": "min"})
    run(tiny_split, tmp_path, "b", config=ToyConfig(drift=True, epochs=3), train=by_rmse)
    _, ckpt = load_model(tmp_path / "b.pt")
    assert (ckpt["epoch"], ckpt["rating_epoch"]) == (1, 1)
    assert "rating_state_dict" not in ckpt and load_rater(ckpt) is None


def test_the_rating_epoch_survives_a_resume(tiny_split, tmp_path):
    by_mae = TRAIN.model_copy(
        update={"early_stop_metric": "val/mae", "early_stop_mode": "max", "patience": 5}
    )
    config = ToyConfig(drift=True, epochs=3)
    run(tiny_split, tmp_path, "whole", config=config, train=by_mae)
    CRASH_AT_STEP["step"] = 2 * -(-len(tiny_split.train) // config.batch_size) + 1  # in epoch 3
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tiny_split, tmp_path, "killed", config=config, train=by_mae)
    CRASH_AT_STEP["step"] = None
    run(tiny_split, tmp_path, "killed", config=config, train=by_mae, resume=True)
    assert (tmp_path / "killed.pt").read_bytes() == (tmp_path / "whole.pt").read_bytes()
    assert torch.load(tmp_path / "killed.pt", weights_only=True)["rating_epoch"] == 1


def test_resume_continues_from_the_saved_epoch_to_the_same_bytes(tiny_split, tmp_path, capsys):
    run(tiny_split, tmp_path, "whole")
    steps_per_epoch = -(-len(tiny_split.train) // ToyConfig().batch_size)
    CRASH_AT_STEP["step"] = steps_per_epoch + 3  # killed inside epoch 2
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tiny_split, tmp_path, "killed")
    assert torch.load(tmp_path / "killed.state.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "killed.pt").exists()

    CRASH_AT_STEP["step"] = None
    state = run(tiny_split, tmp_path, "killed", resume=True)
    assert "resuming after epoch 1" in capsys.readouterr().err
    assert state.epoch == 3
    assert (tmp_path / "killed.pt").read_bytes() == (tmp_path / "whole.pt").read_bytes()


def test_resume_refuses_a_state_without_the_rating_epoch(tiny_split, tmp_path):
    run(tiny_split, tmp_path, "a")
    saved = torch.load(tmp_path / "a.state.pt", weights_only=True)
    del saved["rating"], saved["rating_state"]  # as a state saved before the rating epoch
    torch.save(saved, tmp_path / "a.state.pt")
    with pytest.raises(RecsysError, match="saved by an older recsys; run without --resume"):
        run(tiny_split, tmp_path, "a", resume=True)


def test_resume_refuses_a_state_from_other_params(tiny_split, tmp_path):
    run(tiny_split, tmp_path, "a")
    with pytest.raises(RecsysError, match="saved with a different config"):
        run(tiny_split, tmp_path, "a", config=ToyConfig(lr=0.01), resume=True)


def test_nan_loss_stops_with_one_line_and_a_debug_state(tiny_split, tmp_path, capsys):
    config = ToyConfig(nan_after_steps=5)
    code = run_reporting_errors("train toy", lambda: run(tiny_split, tmp_path, "a", config=config))
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "loss is nan at epoch 1, step 5" in err and "a.state.nan.pt" in err
    debug = torch.load(tmp_path / "a.state.nan.pt", weights_only=True)
    assert debug["step"] == 4 and debug["batch"]["item"].shape == (16,)
    assert not (tmp_path / "a.pt").exists()


def test_dvclive_gets_the_epoch_metrics(tiny_split, tmp_path):
    run(tiny_split, tmp_path, "a", live_dir=tmp_path / "live")
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["step"] == 3
    assert set(summary["val"]) == {"rmse", "mae", "hr@10", "ndcg@10", "mrr@10"}
    assert set(summary["train"]) == {"loss", "grad_norm", "samples"}  # the same every run
    timing = json.loads((tmp_path / "live.timing" / "metrics.json").read_text())
    assert set(timing["train"]) == {"step_s", "samples_per_s"} and timing["memory_mb"] > 0
    curve = (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert len(curve.strip().splitlines()) == 1 + 3  # header + one row per epoch


def test_dvclive_files_are_the_same_bytes_on_a_rerun(tiny_split, tmp_path):
    for name in ("a", "b"):
        run(tiny_split, tmp_path / name, "a", live_dir=tmp_path / name / "live")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "live").rglob("*.*"))
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_closed_form_baseline_trains_in_one_pass(tiny_split, tmp_path):
    from recsys.config import BiasParams

    state = train_model(
        model_name="bias", config=BiasParams(), data=tiny_split, train=TRAIN,
        out=tmp_path / "bias.pt",
    )  # fmt: skip
    assert state.epoch == 1 and state.finished
    model, ckpt = load_model(tmp_path / "bias.pt")
    assert ckpt["model"] == "bias" and model.item_bias.shape == (tiny_split.spec.n_items + 1,)
    assert 0 < ckpt["metrics"]["val/rmse"] < 3


def test_amp_and_compile_are_noted_no_ops_on_cpu(tiny_split, tmp_path, capsys):
    plain = run(tiny_split, tmp_path, "plain")
    train = TRAIN.model_copy(update={"amp": True, "compile": True})
    fancy = run(tiny_split, tmp_path, "fancy", train=train)
    assert "amp / compile apply to CUDA only" in capsys.readouterr().err
    assert fancy.best_metrics == plain.best_metrics
