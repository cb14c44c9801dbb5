"""The fast scorer (one encoding per distinct context) equals the per-query reference path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config import NCFParams, SS4RecParams
from recsys.models.ncf import NCF
from recsys.models.ss4rec import SS4Rec
from recsys.training.scoring import score_queries, score_queries_reference
from recsys.training.tensors import EventLog, QuerySet, split_from_frames
from tests.conftest import tiny_ratings

MAX_LEN = 6
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split():
    """Tiny ratings split by time, plus users who arrive only in the val / test period."""
    old = tiny_ratings(n_users=40, n_items=60, per_user=15, seed=3)
    rng = np.random.default_rng(4)
    late_users = np.repeat(np.arange(100, 110), 6)
    late = pd.DataFrame(
        {
            "user_id": late_users,
            "item_id": rng.integers(1, 61, late_users.size),
            "rating": rng.integers(1, 6, late_users.size).astype(float),
            # pairs of events in the same second, after everything in `old`
            "timestamp": old["timestamp"].max() + 60 + rng.integers(0, 5, late_users.size) * 30,
        }
    ).drop_duplicates(["user_id", "item_id"])
    ratings = pd.concat([old, late]).sort_values(["timestamp", "user_id", "item_id"])
    ratings = ratings.reset_index(drop=True)
    cut_val, cut_test = int(len(ratings) * 0.7), int(len(ratings) * 0.85)
    return split_from_frames(
        ratings.iloc[:cut_val], ratings.iloc[cut_val:cut_test], ratings.iloc[cut_test:]
    )


def make_model(name: str, split):
    torch.manual_seed(0)
    if name == "ncf":
        return NCF(NCFParams(), split.spec)
    model = SS4Rec(SS4RecParams(d_model=16, d_state=8, n_layers=2, dropout=0.0), split.spec)
    with torch.no_grad():  # queries with no history read empty_state: make it non-zero
        model.empty_state.normal_()
    return model


def val_and_test(log: EventLog) -> QuerySet:
    """Every val and test event as a query, as evaluation scores them."""
    return QuerySet(log, np.r_[log.rows_of("val"), log.rows_of("test")], MAX_LEN)


@pytest.mark.parametrize("model_name", ["ss4rec", "ncf"])
def test_fast_scorer_equals_the_reference_on_real_queries(split, model_name):
    model, log = make_model(model_name, split), EventLog(split)
    queries = val_and_test(log)
    first, _ = queries.contexts(model.context)
    # the cases the grouping must get right are all in these queries
    assert len(first) < len(queries), "no same-second siblings (or shared users) to group"
    assert (queries.n_hist == 0).any(), "no query without history"
    assert (queries.n_hist == MAX_LEN).any(), "no query whose history is cut to max_len"
    fast = score_queries(model, queries, batch_size=7, device=CPU)
    ref = score_queries_reference(model, queries, batch_size=7, device=CPU)
    np.testing.assert_allclose(fast.pred_rating, ref.pred_rating, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fast.rank, ref.rank)
    for key in ("rating", "known_item", "warm"):
        np.testing.assert_array_equal(getattr(fast, key), getattr(ref, key))


@pytest.mark.parametrize("model_name", ["ss4rec", "ncf"])
def test_a_rater_predicts_the_ratings_and_the_model_still_ranks(split, model_name):
    """Where the rating epoch differs (`checkpoint.load_rater`): ratings as the rater alone
    gives them, ranks as the model alone, on both paths."""
    model, log = make_model(model_name, split), EventLog(split)
    rater = make_model(model_name, split)
    with torch.no_grad():
        for weight in rater.parameters():
            weight.add_(0.3 * torch.randn_like(weight))
    queries = val_and_test(log)
    alone = {
        "model": score_queries(model, queries, batch_size=7, device=CPU),
        "rater": score_queries(rater, queries, batch_size=7, device=CPU),
    }
    assert np.abs(alone["model"].pred_rating - alone["rater"].pred_rating).max() > 0.1
    for path in (score_queries, score_queries_reference):
        both = path(model, queries, batch_size=7, device=CPU, rater=rater)
        np.testing.assert_allclose(both.pred_rating, alone["rater"].pred_rating, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(both.rank, alone["model"].rank)


def test_a_history_context_is_exactly_the_window_and_the_target_second(split):
    log = EventLog(split)
    queries = val_and_test(log)
    _, which = queries.contexts("history")
    rows = queries.rows.numpy()
    window = np.stack([log.end[rows], queries.n_hist.numpy(), log.seconds[rows].numpy()], 1)
    same_context = which[:, None] == which[None, :]
    same_window = (window[:, None, :] == window[None, :, :]).all(-1)
    np.testing.assert_array_equal(same_context, same_window)
    users = log.frame["user_id"].to_numpy()[rows]  # raw ids: every cold user is index 0
    has_history = queries.n_hist.numpy() > 0
    # with history, a context never mixes users; siblings (same user and second) share one
    mixed = same_context & (users[:, None] != users[None, :])
    assert not (mixed & has_history[:, None]).any()
    siblings = (users[:, None] == users) & (window[:, None, 2] == window[None, :, 2])
    assert (same_context | ~siblings).all()
    assert (same_context & ~np.eye(len(rows), dtype=bool)).any()


def test_state_of_a_query_without_history_is_empty_state(split):
    model, log = make_model("ss4rec", split), EventLog(split)
    queries = val_and_test(log)
    alone = torch.from_numpy(np.flatnonzero(queries.n_hist.numpy() == 0))
    with torch.inference_mode():
        state = model.query_state(queries.batch(alone))
    torch.testing.assert_close(state, model.empty_state.expand_as(state))
