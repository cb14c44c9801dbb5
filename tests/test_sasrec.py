"""SASRec against the model contract (recsys/models/base.py) and its own promises: causal,
order-only, blind to left padding, hist_rating read only when asked, a trained empty_state."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from pydantic import ValidationError

from recsys.config import Params, SASRecParams
from recsys.models.base import DataSpec
from recsys.models.registry import model_class
from recsys.models.sasrec import SASRec
from tests.conftest import PROJECT_ROOT, with_targets

DATA = DataSpec(n_users=7, n_items=11, rating_min=1.0, rating_max=5.0, rating_mean=3.5)
TINY = {"d_model": 16, "n_layers": 2, "n_heads": 2, "dropout": 0.0, "max_len": 8}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(data: DataSpec = DATA, **overrides) -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecParams(**(TINY | overrides)), data)


def query_batch(length: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Five queries, right-aligned histories of lengths 6, 3, 0, 1, 6 (row 2: none)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 3, 0, 1, length])
    mask = torch.arange(length).flip(0).unsqueeze(0) < lengths.unsqueeze(1)
    return {
        "user": torch.tensor([1, 0, 3, 7, 2]),
        "item": torch.tensor([4, 11, 0, 1, 6]),
        "rating": torch.tensor([4.0, 3.0, 5.0, 1.0, 2.0]),
        "target_gap": torch.tensor([0.0, 2.5, 0.0, 400.0, 1e-6]),
        "hist_item": torch.randint(1, DATA.n_items + 1, (5, length), generator=gen) * mask,
        "hist_rating": torch.randint(1, 6, (5, length), generator=gen).float() * mask,
        "hist_gap": torch.rand(5, length, generator=gen) * 3 * mask,
        "hist_mask": mask,
    }


def sequence_batch(lengths=(8, 8, 5, 1), width: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Training windows as sequence_train_set cuts them: right-aligned, padded on the left."""
    gen = torch.Generator().manual_seed(seed)
    n = len(lengths)
    mask = torch.arange(width).flip(0).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    items = torch.randint(1, DATA.n_items + 1, (n, width + 1), generator=gen)
    ratings = torch.randint(1, 6, (n, width + 1), generator=gen).float()
    gaps = torch.rand(n, width + 1, generator=gen)
    return {
        "user": torch.arange(1, n + 1),
        "hist_item": items[:, :-1] * mask,
        "hist_rating": ratings[:, :-1] * mask,
        "hist_gap": gaps[:, :-1] * mask,
        "hist_mask": mask,
        "next_item": items[:, 1:] * mask,
        "next_rating": ratings[:, 1:] * mask,
        "next_gap": gaps[:, 1:] * mask,
        "next_mask": mask.clone(),
    }


def test_registry_and_params_yaml_build_the_model():
    assert model_class("sasrec") is SASRec
    section = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["sasrec"]
    model = SASRec(SASRecParams(**section), DATA)
    assert SASRecParams(**section) == Params().sasrec == SASRecParams()
    assert model.pos_emb.num_embeddings == 50 and model.item_emb.num_embeddings == 12
    with pytest.raises(ValidationError, match="multiple of n_heads"):
        SASRecParams(d_model=10, n_heads=3)


def test_outputs_follow_the_contract():
    model = build().eval()
    batch = query_batch()
    with torch.no_grad():
        state = model.query_state(batch)
        ratings, scores = model.rate(state, batch["item"]), model.rank_scores(state)
        loss = model.loss(with_targets(sequence_batch()))
    assert state.shape == (5, 16) and ratings.shape == (5,) and scores.shape == (5, 12)
    assert loss.shape == () and torch.isfinite(loss)
    assert (scores[:, 0] == -math.inf).all() and torch.isfinite(scores[:, 1:]).all()
    assert torch.isfinite(ratings).all() and (ratings >= 1).all() and (ratings <= 5).all()
    torch.testing.assert_close(model.predict_rating(batch), ratings)
    torch.testing.assert_close(model.score_items(batch), scores)


def test_no_history_is_the_empty_state():
    model = build().eval()
    batch = query_batch()
    no_columns = batch | {k: v[:, :0] for k, v in batch.items() if k.startswith("hist_")}
    with torch.no_grad():
        model.empty_state.fill_(0.3)
        scores, all_padding = model.score_items(no_columns), model.score_items(batch)[2]
    expected = 0.3 * model.item_emb.weight.sum(dim=1)  # state . embedding of each item
    torch.testing.assert_close(scores[:, 1:], expected[1:].expand(5, -1))
    torch.testing.assert_close(all_padding[1:], expected[1:])  # row 2 has no history


def test_an_older_event_reaches_the_newest_state():
    model = build().eval()
    batch = query_batch()
    changed_item = batch["hist_item"].clone()
    changed_item[0, 0] = 1 + changed_item[0, 0] % DATA.n_items  # row 0's oldest event
    with torch.no_grad():
        base = model.query_state(batch)
        changed = model.query_state(batch | {"hist_item": changed_item})
    assert not torch.allclose(changed[0], base[0], atol=1e-4)
    torch.testing.assert_close(changed[1:], base[1:], atol=0, rtol=0)


@pytest.mark.parametrize("t", [0, 3, 6])
def test_the_state_at_t_ignores_later_inputs(t):
    model = build().eval()
    batch = sequence_batch(lengths=(8, 8, 8, 8))
    later = batch | {
        "hist_item": batch["hist_item"].clone(),
        "hist_rating": batch["hist_rating"].clone(),
    }
    later["hist_item"][:, t + 1] = 1 + later["hist_item"][:, t + 1] % DATA.n_items
    later["hist_rating"][:, t + 1] = 6 - later["hist_rating"][:, t + 1]
    with torch.no_grad():
        base, changed = model._encode(batch), model._encode(later)
    torch.testing.assert_close(changed[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(changed[:, t + 1], base[:, t + 1], atol=1e-4)


def test_left_padding_and_events_beyond_max_len_do_not_matter():
    model = build().eval()
    batch = query_batch()
    wider = {  # 5 more padded columns in front, garbage at the pads (11 columns > max_len 8)
        k: torch.cat([torch.full_like(v[:, :5], 9 if k != "hist_mask" else 0), v], dim=1)
        if k.startswith("hist_")
        else v
        for k, v in batch.items()
    }
    longer = query_batch(length=12)  # rows 0 and 4 hold 12 events: only the newest 8 count
    newest = longer | {k: v[:, -8:] for k, v in longer.items() if k.startswith("hist_")}
    with torch.no_grad():
        torch.testing.assert_close(model.query_state(wider), model.query_state(batch))
        torch.testing.assert_close(model.query_state(longer), model.query_state(newest))


def test_time_gaps_are_never_read():
    model = build().eval()
    query, windows = query_batch(), sequence_batch()
    gap_keys = ("hist_gap", "target_gap", "next_gap")
    no_gaps = [{k: v for k, v in b.items() if k not in gap_keys} for b in (query, windows)]
    shifted = [b | {k: b[k] * 100 + 7 for k in gap_keys if k in b} for b in (query, windows)]
    with torch.no_grad():
        state, loss = model.query_state(query), model.loss(with_targets(windows))
        for other_query, other_windows in (no_gaps, shifted):
            torch.testing.assert_close(model.query_state(other_query), state, atol=0, rtol=0)
            torch.testing.assert_close(
                model.loss(with_targets(other_windows)), loss, atol=0, rtol=0
            )


@pytest.mark.parametrize("use_rating_input", [True, False])
def test_hist_rating_is_read_only_when_asked(use_rating_input):
    model = build(use_rating_input=use_rating_input).eval()
    batch = query_batch()
    flipped = batch | {"hist_rating": (6 - batch["hist_rating"]) * batch["hist_mask"]}
    with torch.no_grad():
        base, changed = model.query_state(batch), model.query_state(flipped)
        if not use_rating_input:  # not even present: the state cannot have read it
            no_rating = {k: v for k, v in batch.items() if k != "hist_rating"}
            torch.testing.assert_close(model.query_state(no_rating), base, atol=0, rtol=0)
    assert (model.rating_emb is not None) == use_rating_input
    assert torch.allclose(changed, base) != use_rating_input


def test_empty_state_is_trained_on_users_first_events():
    model = build(rating_weight=0.0)
    windows = sequence_batch(lengths=(8, 8, 5, 1))  # rows 2 and 3 open with a first event
    model.loss(with_targets(windows)).backward()
    assert model.empty_state.grad is not None and model.empty_state.grad.abs().sum() > 0

    full = build(rating_weight=0.0)  # no padded window: empty_state in the graph, zero grad
    full.loss(with_targets(sequence_batch(lengths=(8, 8)))).backward()
    assert full.empty_state.grad is not None and (full.empty_state.grad == 0).all()

    # one event with no next target: the loss is the empty state's CE alone, and at a zero
    # empty_state every item scores 0, so it is log(n_items)
    lone = sequence_batch(lengths=(1,)) | {"next_mask": torch.zeros(1, 8, dtype=torch.bool)}
    assert build(rating_weight=0.0).loss(with_targets(lone)).item() == pytest.approx(
        math.log(11), rel=1e-6
    )


def test_rating_weight_zero_skips_the_rating_head():
    off, on = build(rating_weight=0.0), build(rating_weight=1.0)
    off.loss(with_targets(sequence_batch())).backward()
    on.loss(with_targets(sequence_batch())).backward()
    assert all(p.grad is None for p in off.rating_head.parameters())
    assert off.item_bias.weight.grad is None
    assert all(p.grad is not None for p in on.rating_head.parameters())


def test_loss_reads_only_valid_targets():
    model = build().eval()
    windows = sequence_batch(lengths=(8, 5, 2))
    outside = ~(windows["next_mask"] & windows["hist_mask"])
    garbage = windows | {
        "next_item": torch.where(outside, 3, windows["next_item"]),
        "next_rating": torch.where(outside, 1.0, windows["next_rating"]),
    }
    with torch.no_grad():
        torch.testing.assert_close(
            model.loss(with_targets(garbage)), model.loss(with_targets(windows)), atol=0, rtol=0
        )
    nothing = windows | {
        "next_mask": torch.zeros_like(windows["next_mask"]),
        "hist_mask": torch.zeros_like(windows["hist_mask"]),
    }
    loss = model.loss(with_targets(nothing))
    loss.backward()
    assert loss.item() == 0.0


def permutation_windows(perm, n, width, gen, first_item=None):
    """n windows following item -> perm[item]; with first_item, padded windows that open a user."""
    if first_item is None:
        start = torch.randint(1, len(perm), (n,), generator=gen)
        lengths = torch.full((n,), width)
    else:
        start = torch.full((n,), first_item)
        lengths = torch.randint(1, width, (n,), generator=gen)
    items = torch.empty(n, width + 1, dtype=torch.long)
    items[:, 0] = start
    for t in range(width):
        items[:, t + 1] = perm[items[:, t]]
    mask = torch.arange(width).flip(0).unsqueeze(0) < lengths.unsqueeze(1)
    # right-align: the first `length` events of each chain in the last columns
    shift = (width - lengths).unsqueeze(1)
    index = (torch.arange(width + 1).unsqueeze(0) - shift).clamp(min=0)
    items = items.gather(1, index)
    full = torch.cat([mask, torch.ones(n, 1, dtype=torch.bool)], dim=1)
    items = items * full
    return items, mask


def test_learns_a_first_order_chain_and_the_first_item():
    n_items, width = 20, 8
    data = DataSpec(n_users=1, n_items=n_items, rating_min=1.0, rating_max=5.0, rating_mean=4.0)
    gen = torch.Generator().manual_seed(0)
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(n_items, generator=gen)])
    # every user starts at item 1; mid-history windows start anywhere
    mid, mid_mask = permutation_windows(perm, 48, width, gen)
    opening, open_mask = permutation_windows(perm, 16, width, gen, first_item=1)
    items, mask = torch.cat([mid, opening]), torch.cat([mid_mask, open_mask])
    windows = {
        "hist_item": items[:, :-1],
        "hist_rating": torch.full(mask.shape, 4.0) * mask,
        "hist_mask": mask,
        "next_item": items[:, 1:] * mask,
        "next_rating": torch.full(mask.shape, 4.0) * mask,
        "next_mask": mask,
    }
    model = build(data, d_model=32, n_layers=1, dropout=0.1, rating_weight=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = model.loss(with_targets(windows))
        optimiser.zero_grad(), loss.backward(), optimiser.step()

    held_out, _ = permutation_windows(perm, 64, width, torch.Generator().manual_seed(1))
    lengths = torch.randint(1, width + 1, (64,), generator=torch.Generator().manual_seed(2))
    keep = torch.arange(width).flip(0).unsqueeze(0) < lengths.unsqueeze(1)  # shorter histories
    hist = held_out[:, :-1] * keep
    query = {
        "hist_item": hist,
        "hist_rating": torch.full(hist.shape, 4.0) * keep,
        "hist_mask": keep,
    }
    model.eval()
    with torch.no_grad():
        top = model.rank_scores(model.query_state(query)).argmax(dim=1)
        cold = model.rank_scores(model.query_state({k: v[:1, :0] for k, v in query.items()}))
    hr_at_1 = (top == perm[hist[:, -1]]).float().mean()
    assert hr_at_1 > 0.9  # chance: 1 / 20
    assert cold.argmax().item() == 1  # the empty state learnt what users start with


def test_checkpoint_round_trip_rebuilds_an_identical_model(tmp_path):
    model = build().eval()
    path = tmp_path / "sasrec.pt"
    torch.save(
        {"config": model.cfg.model_dump(), "data": DATA.model_dump(), "state": model.state_dict()},
        path,
    )
    ckpt = torch.load(path, weights_only=True)
    rebuilt = SASRec(SASRecParams(**ckpt["config"]), DataSpec(**ckpt["data"]))
    rebuilt.load_state_dict(ckpt["state"])
    rebuilt.eval()
    batch = query_batch()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.score_items(batch), model.score_items(batch))
        torch.testing.assert_close(rebuilt.predict_rating(batch), model.predict_rating(batch))
