"""Queries, sequence windows and batch iteration on a split small enough to check by hand."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from recsys.training.tensors import (
    EventLog,
    QuerySet,
    iterate_batches,
    query_train_set,
    sequence_train_set,
    split_from_frames,
)

DAY = 86_400.0


def frame(rows: list[tuple[int, int, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def hand_split():
    """Items 10, 11, 12, 13 -> 1..4 and users 1, 2 -> 1, 2 (from train); user 3 is cold."""
    train = frame(
        [(1, 10, 3, 100), (2, 10, 2, 150), (2, 13, 4, 150), (1, 11, 5, 200), (1, 12, 5, 200)]
    )
    val = frame([(1, 13, 1, 300), (3, 11, 4, 310)])
    test = frame([(3, 12, 2, 500), (3, 99, 3, 500), (3, 10, 5, 600), (1, 11, 4, 1000)])
    return split_from_frames(train, val, test)


def test_query_history_is_strictly_earlier_right_aligned_and_truncated():
    log = EventLog(hand_split())
    batch = QuerySet(log, log.rows_of("test"), max_len=3).batch(torch.arange(4))

    assert batch["user"].tolist() == [0, 0, 0, 1]  # user 3 has no training rating
    assert batch["item"].tolist() == [3, 0, 1, 2]  # item 99 was never seen in training
    # (3, 12, t=500): only the val event at 310; its same-second sibling 99 is not history
    assert batch["hist_item"][0].tolist() == [0, 0, 2]
    assert batch["hist_mask"][0].tolist() == [False, False, True]
    assert batch["hist_item"][1].tolist() == [0, 0, 2]
    # (3, 10, t=600): the earlier TEST events at 500 are history (99 is unknown: 0, but real)
    assert batch["hist_item"][2].tolist() == [2, 3, 0]
    assert batch["hist_mask"][2].tolist() == [True, True, True]
    assert batch["hist_rating"][2].tolist() == [4.0, 2.0, 3.0]
    assert batch["hist_gap"][2].tolist() == pytest.approx([0.0, 190 / DAY, 0.0])
    # user 1 at t=1000 has 4 earlier events (10, 11, 12, 13): the newest 3 are kept
    assert batch["hist_item"][3].tolist() == [2, 3, 4]
    assert batch["hist_gap"][3].tolist() == pytest.approx([100 / DAY, 0.0, 100 / DAY])
    assert batch["target_gap"].tolist() == pytest.approx(
        [190 / DAY, 190 / DAY, 100 / DAY, 700 / DAY]
    )


def test_first_event_of_a_user_has_no_history():
    log = EventLog(hand_split())
    batch = QuerySet(log, log.rows_of("val"), max_len=2).batch(torch.arange(2))
    assert batch["hist_item"][1].tolist() == [0, 0]  # user 3's first event ever
    assert not batch["hist_mask"][1].any()
    assert batch["target_gap"][1].item() == 0.0
    assert batch["hist_item"][0].tolist() == [2, 3]  # user 1 at 300: 11 and 12 (both at 200)


def test_order_history_includes_same_second_siblings_before_the_target():
    log = EventLog(hand_split(), history_by="order")
    batch = QuerySet(log, log.rows_of("test"), max_len=3).batch(torch.arange(2))
    assert batch["hist_item"][1].tolist() == [0, 2, 3]  # (3, 99) now sees (3, 12) at 500


def test_sequence_targets_read_the_state_after_their_last_strictly_earlier_event():
    windows = sequence_train_set(EventLog(hand_split()), max_len=2)
    batch = windows.batch(torch.arange(2))
    # user 1: items 1@100, 2@200, 3@200; user 2: items 1@150, 4@150 (one second)
    assert batch["user"].tolist() == [1, 2]
    assert batch["hist_item"].tolist() == [[1, 2], [1, 4]]
    assert batch["hist_gap"][0].tolist() == pytest.approx([0.0, 100 / DAY])
    assert batch["next_gap"][0].tolist() == pytest.approx([100 / DAY, 0.0])  # S5 steps
    targets = list(
        zip(batch["target_row"].tolist(), batch["target_col"].tolist(),
            batch["target_item"].tolist(), strict=True)
    )  # fmt: skip
    # user 1's first event: the empty state; 2 and 3 (same second) both after item 1 only;
    # user 2's two events share their second: neither is the other's history
    assert targets == [(0, -1, 1), (0, 0, 2), (0, 0, 3), (1, -1, 1), (1, -1, 4)]
    assert batch["target_rating"].tolist() == [3.0, 5.0, 5.0, 2.0, 4.0]
    assert windows.n_targets(torch.arange(2)) == 5  # every training event, once


def test_one_event_windows_give_each_target_its_previous_event():
    windows = sequence_train_set(EventLog(hand_split()), max_len=1)
    batch = windows.batch(torch.arange(len(windows)))
    assert batch["hist_item"].tolist() == [[1], [2], [1]]
    previous = [
        int(batch["hist_item"][r, c]) if c >= 0 else 0
        for r, c in zip(batch["target_row"].tolist(), batch["target_col"].tolist(), strict=True)
    ]
    assert list(zip(previous, batch["target_item"].tolist(), strict=True)) == [
        (0, 1), (1, 2), (1, 3), (0, 1), (0, 4)
    ]  # fmt: skip


@pytest.mark.parametrize(("max_len", "stride"), [(3, 3), (3, 2), (4, 1), (5, 3)])
def test_training_history_is_the_query_history_cut_at_the_window_start(max_len, stride):
    """Each target's in-window history is the newest part of its query history, and at least
    max_len - stride + 1 events of it (all, near a user's start)."""
    rows = [(1, i, 3.0, 1000 + 60 * (i // 2)) for i in range(1, 16)]  # pairs share a second
    rows += [(2, i, 4.0, 5000 + 60 * i) for i in range(1, 9)]
    data = split_from_frames(frame(rows), frame([]), frame([]))
    log = EventLog(data)
    windows = sequence_train_set(log, max_len, stride)
    batch = windows.batch(torch.arange(len(windows)))
    queries = QuerySet(log, log.rows_of("train"), max_len)
    by_item = {  # (user, item) -> the query's history items, oldest first
        (int(q["user"]), int(q["item"])): q["hist_item"][q["hist_mask"]].tolist()
        for q in (queries.batch(torch.tensor([i])) for i in range(len(queries)))
        for q in [{k: v[0] for k, v in q.items()}]
    }
    assert windows.n_targets(torch.arange(len(windows))) == len(rows)
    for r, c, item in zip(
        *(batch[k].tolist() for k in ("target_row", "target_col", "target_item")), strict=True
    ):
        want = by_item[(int(batch["user"][r]), item)]
        seen = (
            [] if c < 0 else batch["hist_item"][r, : c + 1][batch["hist_mask"][r, : c + 1]].tolist()
        )
        assert want[len(want) - len(seen) :] == seen
        assert len(seen) >= min(len(want), max_len - stride + 1)


def test_query_train_set_has_no_history():
    queries = query_train_set(hand_split())
    batch = queries.batch(torch.arange(len(queries)))
    assert batch["hist_item"].shape == (5, 0)
    assert batch["item"].tolist() == [1, 1, 4, 2, 3]
    assert batch["rating"].tolist() == [3.0, 2.0, 4.0, 5.0, 5.0]


def test_seeded_permutation_repeats_and_covers_everything():
    first = torch.cat(list(iterate_batches(10, 3, shuffle=True, seed=7)))
    again = torch.cat(list(iterate_batches(10, 3, shuffle=True, seed=7)))
    other = torch.cat(list(iterate_batches(10, 3, shuffle=True, seed=8)))
    assert first.tolist() == again.tolist() != other.tolist()
    assert sorted(first.tolist()) == list(range(10))
    assert [len(b) for b in iterate_batches(10, 3, shuffle=False)] == [3, 3, 3, 1]
