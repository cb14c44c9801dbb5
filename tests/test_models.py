"""NCF and SS4Rec against the model contract in recsys/models/base.py."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.config import Params
from recsys.models.base import DataSpec
from recsys.models.registry import model_class
from tests.conftest import with_targets

DATA = DataSpec(n_users=7, n_items=11, rating_min=1.0, rating_max=5.0, rating_mean=3.5)
TINY = {
    "ncf": {"gmf_dim": 4, "mlp_dim": 4, "mlp_layers": [8, 4]},
    "ss4rec": {"d_model": 16, "n_layers": 1, "d_state": 8, "dropout": 0.0},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, data: DataSpec = DATA, **overrides):
    torch.manual_seed(0)
    cls = model_class(name)
    section = getattr(Params(), name).model_dump() | TINY[name] | overrides
    return cls(cls.Config(**section), data)


def query_batch(batch=5, length=6, seed=0) -> dict[str, torch.Tensor]:
    """A query batch per the contract: right-aligned histories, some short, one empty."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 3, 0, 1, length][:batch])
    mask = torch.arange(length).flip(0).unsqueeze(0) < lengths.unsqueeze(1)  # right-aligned
    return {
        "user": torch.tensor([1, 0, 3, 7, 2][:batch]),  # 0 = unknown user
        "item": torch.tensor([4, 11, 0, 1, 6][:batch]),  # 0 = unknown item
        "rating": torch.tensor([4.0, 3.0, 5.0, 1.0, 2.0][:batch]),
        "target_gap": torch.tensor([0.0, 2.5, 0.0, 400.0, 1e-6][:batch]),
        "hist_item": torch.randint(1, DATA.n_items + 1, (batch, length), generator=gen) * mask,
        "hist_rating": torch.randint(1, 6, (batch, length), generator=gen).float() * mask,
        "hist_gap": torch.rand(batch, length, generator=gen) * 3 * mask,
        "hist_mask": mask,
    }


@pytest.mark.parametrize("name", ["ncf", "ss4rec"])
def test_outputs_follow_the_contract(name):
    model = build(name).eval()
    batch = query_batch()
    with torch.no_grad():
        ratings, scores = model.predict_rating(batch), model.score_items(batch)
    assert ratings.shape == (5,) and scores.shape == (5, DATA.n_items + 1)
    assert torch.isfinite(ratings).all() and (ratings >= 1).all() and (ratings <= 5).all()
    assert (scores[:, 0] == -math.inf).all()
    assert torch.isfinite(scores[:, 1:]).all()  # unknown user/item and empty history included


def test_ncf_ignores_history_even_when_empty():
    model = build("ncf").eval()
    batch = query_batch()
    empty = batch | {k: v[:, :0] for k, v in batch.items() if k.startswith("hist_")}
    with torch.no_grad():
        torch.testing.assert_close(model.predict_rating(empty), model.predict_rating(batch))
        torch.testing.assert_close(model.score_items(empty), model.score_items(batch))


def test_ss4rec_empty_history_uses_the_learned_state():
    model = build("ss4rec").eval()
    batch = query_batch()
    empty = batch | {k: v[:, :0] for k, v in batch.items() if k.startswith("hist_")}
    with torch.no_grad():
        model.empty_state.fill_(0.3)
        scores, all_padding = model.score_items(empty), model.score_items(batch)[2]
    expected = 0.3 * model.item_emb.weight.sum(dim=1)
    torch.testing.assert_close(scores[:, 1:], expected[1:].expand(5, -1))
    torch.testing.assert_close(all_padding[1:], expected[1:])  # row 2 has no history


def test_ss4rec_history_matters_and_padding_does_not():
    model = build("ss4rec").eval()
    batch = query_batch()
    wider = {  # the same events with 4 more padded steps in front (garbage at the pads)
        k: torch.cat([torch.full_like(v[:, :4], 9 if k != "hist_mask" else 0), v], dim=1)
        if k.startswith("hist_")
        else v
        for k, v in batch.items()
    }
    changed = batch | {"hist_item": batch["hist_item"].roll(1, dims=0) * batch["hist_mask"]}
    with torch.no_grad():
        base = model.score_items(batch)
        torch.testing.assert_close(model.score_items(wider), base, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model.score_items(changed)[0], base[0])


def test_ncf_loss_decreases():
    model = build("ncf", unknown_prob=0.0)
    gen = torch.Generator().manual_seed(1)
    users, items = (
        torch.randint(1, 8, (64,), generator=gen),
        torch.randint(1, 12, (64,), generator=gen),
    )
    batch = {"user": users, "item": items, "rating": 1.0 + ((users + items) % 5).float()}
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        loss = model.loss(batch)
        optimiser.zero_grad(), loss.backward(), optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def gap_pattern_batch(n_windows=48, length=12, n_items=10, seed=0):
    """Sequences where the next item is prev + 1 after a short gap and prev + 3 after a long one."""
    gen = torch.Generator().manual_seed(seed)
    long_gap = torch.rand(n_windows, length + 1, generator=gen) < 0.5
    gaps = torch.where(long_gap, 30.0, 0.0)  # days to the NEXT event
    items = torch.zeros(n_windows, length + 1, dtype=torch.long)
    items[:, 0] = torch.randint(0, n_items, (n_windows,), generator=gen)
    for t in range(1, length + 1):
        items[:, t] = (items[:, t - 1] + torch.where(long_gap[:, t - 1], 3, 1)) % n_items
    items += 1
    ones = torch.ones(n_windows, length, dtype=torch.bool)
    hist_gap = torch.cat([torch.zeros(n_windows, 1), gaps[:, :-2]], dim=1)
    return {
        "user": torch.zeros(n_windows, dtype=torch.long),
        "hist_item": items[:, :-1],
        "hist_rating": torch.full((n_windows, length), 4.0),
        "hist_gap": hist_gap,
        "hist_mask": ones,
        "next_item": items[:, 1:],
        "next_rating": torch.full((n_windows, length), 4.0),
        "next_gap": gaps[:, :-1],
        "next_mask": ones,
    }


def test_ss4rec_learns_to_use_the_time_gap():
    data = DataSpec(n_users=1, n_items=10, rating_min=1.0, rating_max=5.0, rating_mean=4.0)
    model = build("ss4rec", data=data, rating_weight=0.0)
    batch = gap_pattern_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    first = model.loss(with_targets(batch)).item()
    for _ in range(50):
        loss = model.loss(with_targets(batch))
        optimiser.zero_grad(), loss.backward(), optimiser.step()
    model.eval()
    with torch.no_grad():
        states = model._encode(batch, batch["next_gap"])
        swapped = model._encode(batch, 30.0 - batch["next_gap"])  # short <-> long
        accuracy = (model._item_logits(states).argmax(-1) == batch["next_item"]).float().mean()
        fooled = (model._item_logits(swapped).argmax(-1) == batch["next_item"]).float().mean()
    assert model.loss(with_targets(batch)).item() < 0.5 * first  # chance level is log(10) = 2.3
    assert accuracy > 0.9  # the gap decides between two successors: it must be used
    assert fooled < 0.6


def test_ss4rec_loss_without_targets_is_zero():
    model = build("ss4rec")
    batch = gap_pattern_batch(n_windows=2, length=3)
    no_targets = batch | {"next_mask": torch.zeros(2, 3, dtype=torch.bool)}
    loss = model.loss(with_targets(no_targets, first_events=False))
    loss.backward()
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", ["ncf", "ss4rec"])
def test_checkpoint_round_trip_rebuilds_an_identical_model(name, tmp_path):
    model = build(name).eval()
    path = tmp_path / f"{name}.pt"
    torch.save(
        {"config": model.cfg.model_dump(), "data": DATA.model_dump(), "state": model.state_dict()},
        path,
    )
    ckpt = torch.load(path, weights_only=True)
    cls = model_class(name)
    rebuilt = cls(cls.Config(**ckpt["config"]), DataSpec(**ckpt["data"]))
    rebuilt.load_state_dict(ckpt["state"])
    rebuilt.eval()
    batch = query_batch()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.score_items(batch), model.score_items(batch))
        torch.testing.assert_close(rebuilt.predict_rating(batch), model.predict_rating(batch))


def perturbed_gaps(batch: dict, seed: int = 5) -> dict:
    """The same batch with every time gap changed (history, target and S5 steps)."""
    gen = torch.Generator().manual_seed(seed)
    changed = dict(batch)
    for key in ("hist_gap", "target_gap", "next_gap"):
        if key in batch:
            changed[key] = batch[key] + torch.rand(batch[key].shape, generator=gen) * 30
    return changed


@pytest.mark.parametrize("variant", ["full", "no_time", "s5_only", "mamba_only"])
def test_variants_see_time_gaps_exactly_when_they_have_time(variant):
    model = build("ss4rec", variant=variant).eval()
    queries, windows = query_batch(), with_targets(gap_pattern_batch(n_windows=4, length=6))
    with torch.no_grad():
        state, loss = model.query_state(queries), model.loss(windows)
        moved_state = model.query_state(perturbed_gaps(queries))
        moved_loss = model.loss(perturbed_gaps(windows))
    if variant in ("no_time", "mamba_only"):  # blind: identical bytes
        assert torch.equal(state, moved_state) and torch.equal(loss, moved_loss)
    else:
        assert not torch.allclose(state, moved_state) and not torch.allclose(loss, moved_loss)


@pytest.mark.parametrize("variant", ["full", "s5_only", "mamba_only"])
def test_query_state_forms_only_the_last_position_with_the_same_values(variant):
    """query_state's last block forms the newest position only; the states equal the full
    encoding's last position (two blocks, so the first still feeds every position)."""
    model = build("ss4rec", variant=variant, n_layers=2).eval()
    batch = query_batch()
    step_gap = torch.cat([batch["hist_gap"][:, 1:], batch["target_gap"].unsqueeze(1)], dim=1)
    with torch.no_grad():
        full = model._encode(batch, step_gap)
        last = model._encode(batch, step_gap, last_only=True)
        state = model.query_state(batch)
    assert full.shape == (5, 6, 16) and last.shape == (5, 1, 16)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-6, rtol=1e-6)
    has_history = batch["hist_mask"].any(dim=1)
    torch.testing.assert_close(state[has_history], full[has_history, -1], atol=1e-6, rtol=1e-6)


def test_variants_drop_the_layer_they_name():
    layers = {
        variant: {type(m).__name__ for m in build("ss4rec", variant=variant).modules()}
        for variant in ("full", "no_time", "s5_only", "mamba_only")
    }
    assert {"TimeAwareS5", "SelectiveSSM"} <= layers["full"] and layers["no_time"] == layers["full"]
    assert "SelectiveSSM" not in layers["s5_only"] and "TimeAwareS5" in layers["s5_only"]
    assert "TimeAwareS5" not in layers["mamba_only"] and "SelectiveSSM" in layers["mamba_only"]


def test_step_range_sets_s5_alone_and_mamba_keeps_its_own():
    """dt_min / dt_max span S5's initial steps; Mamba's softplus(dt bias) stays in 0.001-0.1."""
    model = build("ss4rec", dt_min=0.5, dt_max=2.0)
    block = model.blocks[0]
    s5_steps = block.s5.log_step.detach().exp()
    mamba_steps = torch.nn.functional.softplus(block.mamba.dt_proj.bias.detach())
    assert s5_steps.min() >= 0.5 and s5_steps.max() <= 2.0
    assert mamba_steps.min() >= 0.001 - 1e-7 and mamba_steps.max() <= 0.1 + 1e-7
    default = build("ss4rec")  # same seed, same draws: only S5's range moved
    torch.testing.assert_close(default.blocks[0].mamba.dt_proj.bias, block.mamba.dt_proj.bias)


def test_ss4rec_without_rating_input_never_reads_ratings():
    model = build("ss4rec", use_rating_input=False).eval()
    batch = query_batch()
    other = batch | {"hist_rating": torch.rand(batch["hist_rating"].shape) * 5}
    with torch.no_grad():
        assert torch.equal(model.query_state(batch), model.query_state(other))


def test_ss4rec_empty_state_is_trained_on_real_windows():
    """A user's first training events are targets of empty_state (it was never trained)."""
    from recsys.training.tensors import EventLog, sequence_train_set, split_from_frames
    from tests.conftest import tiny_ratings

    data = split_from_frames(tiny_ratings(), tiny_ratings().iloc[:0], tiny_ratings().iloc[:0])
    windows = sequence_train_set(EventLog(data), max_len=4)
    model = build("ss4rec", DataSpec(**data.spec.model_dump()))
    model.loss(windows.batch(torch.arange(len(windows)))).backward()
    assert model.empty_state.grad is not None and model.empty_state.grad.abs().sum() > 0
