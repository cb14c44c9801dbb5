"""Model inputs built once as tensors from the split (see recsys.models.base for the contract).

Three kinds, all vectorised (no per-event Python):
- `QuerySet`: one query per target event with the user's last `max_len` earlier events as
  history, right-aligned. In the temporal protocol ("time") history is every event of the user
  with a STRICTLY earlier timestamp, from all rows (train, val, and earlier test rows): a
  same-second sibling is not history. The leave-one-out protocol ("order") follows RecBole and
  takes every event before the target in (timestamp, item) order instead.
- `WindowSet` (`sequence_train_set`): each user's training events in (timestamp, item) order
  in windows of `max_len` inputs; every training event is a target exactly once, predicted
  from the state after its last strictly earlier event (as a query would be).
- `query_train_set`: training events as queries with no history (L = 0).

hist_gap is the gap to the user's previous event even when that event fell outside the
window (truncation keeps the true gap); it is 0 only at the user's first event and at padding.

Batches come from `iterate_batches` (a seeded permutation of indices) and `Set.batch(idx)`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from recsys.errors import RecsysError
from recsys.io import md5_file
from recsys.models.base import Batch, DataSpec

SECONDS_PER_DAY = 86_400.0
HistoryBy = Literal["time", "order"]


class IdIndex:
    """Raw id -> dense index 1..n (0 = unknown), from a split id map (raw_id, idx)."""

    def __init__(self, id_map: pd.DataFrame):
        order = np.argsort(id_map["raw_id"].to_numpy(), kind="stable")
        self.raw = id_map["raw_id"].to_numpy()[order]
        self.idx = id_map["idx"].to_numpy()[order].astype(np.int64)

    def __len__(self) -> int:
        return len(self.raw)

    def lookup(self, raw_ids: np.ndarray) -> np.ndarray:
        """Dense indices of `raw_ids`; 0 where an id is not in the map."""
        pos = np.clip(np.searchsorted(self.raw, raw_ids), 0, max(len(self.raw) - 1, 0))
        found = len(self.raw) > 0 and self.raw[pos] == raw_ids
        return np.where(found, self.idx[pos], 0).astype(np.int64)

    def raw_of(self, idx: np.ndarray) -> np.ndarray:
        """Raw ids of dense indices 1..n (as stored in the map)."""
        by_idx = np.empty(len(self.raw) + 1, dtype=self.raw.dtype)
        by_idx[self.idx] = self.raw
        return by_idx[idx]


@dataclass
class SplitData:
    """The three parts of a split (raw ids), their id maps, DataSpec and data fingerprint."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    users: IdIndex
    items: IdIndex
    spec: DataSpec
    fingerprint: str  # md5 of train.parquet (or of the frames, for in-memory splits)


def data_spec(train: pd.DataFrame, n_users: int, n_items: int) -> DataSpec:
    """DataSpec from the training rows and the id map sizes."""
    ratings = train["rating"].to_numpy(dtype=np.float64)
    return DataSpec(
        n_users=n_users,
        n_items=n_items,
        rating_min=float(ratings.min()),
        rating_max=float(ratings.max()),
        rating_mean=float(ratings.mean()),
    )


SPLIT_PARTS = ("train", "val", "test", "users", "items")  # the files load_split reads


def load_split(split_dir: str | Path) -> SplitData:
    """Read `artifacts/split/` (train/val/test parquet and id maps)."""
    split_dir = Path(split_dir)
    names = SPLIT_PARTS
    missing = [n for n in names if not (split_dir / f"{n}.parquet").is_file()]
    if missing:
        raise RecsysError(
            f"{split_dir}: missing {', '.join(missing)}.parquet; run `dvc repro split`"
        )
    frames = {n: pd.read_parquet(split_dir / f"{n}.parquet") for n in names}
    if frames["train"].empty:
        raise RecsysError(f"{split_dir / 'train.parquet'}: no rows to train on")
    users, items = IdIndex(frames["users"]), IdIndex(frames["items"])
    return SplitData(
        train=frames["train"],
        val=frames["val"],
        test=frames["test"],
        users=users,
        items=items,
        spec=data_spec(frames["train"], len(users), len(items)),
        fingerprint=md5_file(split_dir / "train.parquet"),
    )


def split_from_frames(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> SplitData:
    """A SplitData from in-memory parts (id maps over the training rows, as the split does)."""
    from recsys.etl.split import id_map

    users, items = IdIndex(id_map(train["user_id"])), IdIndex(id_map(train["item_id"]))
    digest = hashlib.md5()
    for part in (train, val, test):
        digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
    return SplitData(
        train=train.reset_index(drop=True),
        val=val.reset_index(drop=True),
        test=test.reset_index(drop=True),
        users=users,
        items=items,
        spec=data_spec(train, len(users), len(items)),
        fingerprint=digest.hexdigest(),
    )


class EventLog:
    """Every event of a split, sorted by (user, timestamp, item), as flat tensors.

    `end[r]` is one past the last history event of row r and `start[r]` the first row of its
    user, so the history of row r is rows start[r]..end[r]-1 (at most the last max_len of them).
    """

    def __init__(self, data: SplitData, history_by: HistoryBy = "time"):
        self.history_by = history_by
        parts = [("train", data.train), ("val", data.val), ("test", data.test)]
        frame = pd.concat(
            [f.assign(part=name, row=np.arange(len(f))) for name, f in parts], ignore_index=True
        )
        frame = frame.iloc[
            np.lexsort((frame["item_id"], frame["timestamp"], frame["user_id"]))
        ].reset_index(drop=True)
        self.frame = frame
        user_raw = frame["user_id"].to_numpy()
        seconds = frame["timestamp"].to_numpy(dtype=np.int64)
        position = np.arange(len(frame))
        new_user = np.r_[True, user_raw[1:] != user_raw[:-1]]
        self.start = np.maximum.accumulate(np.where(new_user, position, 0))
        if history_by == "time":  # history ends where the target's same-second group begins
            new_second = new_user | np.r_[True, seconds[1:] != seconds[:-1]]
            self.end = np.maximum.accumulate(np.where(new_second, position, 0))
        else:
            self.end = position
        gap_seconds = np.where(new_user, 0, np.diff(seconds, prepend=seconds[:1]))
        self.seconds = torch.from_numpy(seconds.copy())
        self.user = torch.from_numpy(data.users.lookup(user_raw))
        self.item = torch.from_numpy(data.items.lookup(frame["item_id"].to_numpy()))
        self.rating = torch.from_numpy(frame["rating"].to_numpy(dtype=np.float32))
        self.gap_days = torch.from_numpy((gap_seconds / SECONDS_PER_DAY).astype(np.float32))

    def rows_of(self, part: str) -> np.ndarray:
        """Positions in the log of the rows of `part`, in that part's own row order."""
        mask = (self.frame["part"] == part).to_numpy()
        positions = np.flatnonzero(mask)
        return positions[np.argsort(self.frame["row"].to_numpy()[mask], kind="stable")]


class QuerySet:
    """Queries for target events (rows of an EventLog) with right-aligned history."""

    def __init__(self, log: EventLog, rows: np.ndarray, max_len: int):
        self.log, self.max_len = log, max_len
        self.rows = torch.from_numpy(rows.astype(np.int64))
        self.end = torch.from_numpy(log.end[rows].astype(np.int64))
        n_hist = log.end[rows] - log.start[rows]
        self.n_hist = torch.from_numpy(np.minimum(n_hist, max_len).astype(np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: torch.Tensor, width: int | None = None) -> Batch:
        """The query batch for queries `idx` (B,), history L = max_len columns (or `width`).

        A narrower `width` drops left padding only when it is at least the longest history in
        the batch: a scorer's shortcut, exact because padding never reaches a model's state.
        """
        log, rows, end, n_hist = self.log, self.rows[idx], self.end[idx], self.n_hist[idx]
        width = self.max_len if width is None else width
        offsets = torch.arange(width) - width  # (L,) -L..-1
        positions = (end[:, None] + offsets).clamp(min=0)  # (B, L)
        mask = offsets[None, :] >= -n_hist[:, None]  # (B, L) right-aligned
        last = (end - 1).clamp(min=0)
        target_gap = (log.seconds[rows] - log.seconds[last]).float() / SECONDS_PER_DAY
        return {
            "user": log.user[rows],
            "item": log.item[rows],
            "rating": log.rating[rows],
            "target_gap": torch.where(n_hist > 0, target_gap, 0.0),
            "hist_item": torch.where(mask, log.item[positions], 0),
            "hist_rating": torch.where(mask, log.rating[positions], 0.0),
            "hist_gap": torch.where(mask, log.gap_days[positions], 0.0),
            "hist_mask": mask,
        }

    def n_targets(self, idx: torch.Tensor) -> int:
        """Training target events in a batch: one per query."""
        return len(idx)

    def contexts(self, context: str) -> tuple[np.ndarray, np.ndarray]:
        """Queries with the same context: (one query per context (G,), context of each (N,)).

        "user": the user index. "history": the history window (its end and length) and the
        target's timestamp, which fix the window's items, ratings, gaps and the gap to the
        target; same-second siblings of one user share all of them (history is strictly
        earlier), so they share one context.
        """
        if context == "user":
            keys = self.log.user[self.rows].numpy()[:, None]
        else:
            keys = np.stack(
                [self.end.numpy(), self.n_hist.numpy(), self.log.seconds[self.rows].numpy()], 1
            )
        _, first, which = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return first.astype(np.int64), which.reshape(-1).astype(np.int64)


class TensorSet:
    """A batch dictionary of pre-built tensors, indexed along the first dimension."""

    def __init__(self, tensors: Batch):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def batch(self, idx: torch.Tensor) -> Batch:
        """Rows `idx` of every tensor."""
        return {key: value[idx] for key, value in self.tensors.items()}

    def n_targets(self, idx: torch.Tensor) -> int:
        """Training target events in a batch: one per row."""
        return len(idx)

    def to(self, device: torch.device | str) -> TensorSet:
        """The same set with every tensor on `device`."""
        moved = {key: value.to(device) for key, value in self.tensors.items()}
        return TensorSet(moved)


def query_train_set(data: SplitData) -> TensorSet:
    """Training events as queries with no history (L = 0), for models of training_kind query."""
    n = len(data.train)
    empty = torch.zeros((n, 0))
    return TensorSet(
        {
            "user": torch.from_numpy(data.users.lookup(data.train["user_id"].to_numpy())),
            "item": torch.from_numpy(data.items.lookup(data.train["item_id"].to_numpy())),
            "rating": torch.from_numpy(data.train["rating"].to_numpy(dtype=np.float32)),
            "target_gap": torch.zeros(n),
            "hist_item": empty.long(),
            "hist_rating": empty,
            "hist_gap": empty,
            "hist_mask": empty.bool(),
        }
    )


class WindowSet:
    """Sequence training windows and their targets (a sequence batch, recsys.models.base).

    Targets are flat: target r belongs to window `targets["window"][r]` (sorted by window) and
    is predicted from the state after its window's column `col` (-1: no history, the model's
    empty state). `batch(idx)` returns the windows `idx` and all of their targets.
    """

    def __init__(self, windows: Batch, targets: Batch):
        self.tensors, self.targets = windows, targets
        n_windows = len(windows["hist_item"])
        self.offsets = torch.searchsorted(targets["window"], torch.arange(n_windows + 1))

    def __len__(self) -> int:
        return len(self.tensors["hist_item"])

    def batch(self, idx: torch.Tensor) -> Batch:
        """Windows `idx` (B,) with their targets (M,), target_row indexing into the B windows."""
        counts = self.offsets[idx + 1] - self.offsets[idx]  # (B,)
        row = torch.repeat_interleave(torch.arange(len(idx), device=idx.device), counts)
        first = torch.repeat_interleave(self.offsets[idx], counts)
        skip = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        flat = first + torch.arange(len(row), device=idx.device) - skip  # (M,)
        return {key: value[idx] for key, value in self.tensors.items()} | {
            "target_row": row,
            "target_col": self.targets["col"][flat],
            "target_item": self.targets["item"][flat],
            "target_rating": self.targets["rating"][flat],
        }

    def n_targets(self, idx: torch.Tensor) -> int:
        """Training target events in a batch of windows."""
        return int((self.offsets[idx + 1] - self.offsets[idx]).sum())

    def to(self, device: torch.device | str) -> WindowSet:
        """The same set with every tensor on `device`."""
        moved = WindowSet.__new__(WindowSet)
        moved.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        moved.targets = {k: v.to(device) for k, v in self.targets.items()}
        moved.offsets = self.offsets.to(device)
        return moved


def sequence_train_set(log: EventLog, max_len: int, stride: int | None = None) -> WindowSet:
    """Every training event as a target, its history as evaluation has it, in shared windows.

    A target's history is its user's training events with a strictly earlier timestamp (a
    same-second sibling is not history), the newest `max_len` of them at most: the state the
    model reads is the one after the last of them, whose S5 step runs to the target's time.
    Windows hold `max_len` consecutive events of a user and start every `stride` events
    (default max_len: no overlap); a target is trained in the first window that holds its
    last history event, so it sees at least max_len - stride + 1 of its history events (all
    of them near the user's start) and evaluation sees up to max_len. A user's first events
    (no earlier event) are targets of the empty state (col -1).
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise RecsysError(f"window stride {stride} must be within 1..max_len ({max_len})")
    train_pos = np.sort(log.rows_of("train"))  # (user, timestamp, item) order
    user, seconds = log.user[train_pos].numpy(), log.seconds[train_pos].numpy()
    n, index = len(train_pos), np.arange(len(train_pos))
    new_user = np.r_[True, user[1:] != user[:-1]]
    new_second = new_user | np.r_[True, seconds[1:] != seconds[:-1]]
    if log.history_by == "order":  # RecBole's convention: every earlier event in the order
        new_second = np.ones(n, dtype=bool)
    user_start = np.maximum.accumulate(np.where(new_user, index, 0))
    starts = np.flatnonzero(new_user)
    lengths = np.diff(np.r_[starts, n])  # events per user
    last = np.maximum.accumulate(np.where(new_second, index, 0)) - user_start - 1  # (n,) local
    # windows per user: ends L-1, L-1+S, ... (capped at the user's last event) until they
    # hold the user's newest possible history event (its second-to-last)
    n_windows = 1 + np.maximum(0, -(-(lengths - 1 - max_len) // stride))
    owner = np.repeat(np.arange(len(starts)), n_windows)
    k = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    end = np.minimum(max_len - 1 + k * stride, lengths[owner] - 1)  # (W,) local
    inputs = end[:, None] - max_len + 1 + np.arange(max_len)  # (W, L) local
    mask = inputs >= 0
    at = np.where(mask, inputs + starts[owner][:, None], 0)  # (W, L) over train_pos
    user_of = np.searchsorted(starts, index, side="right") - 1  # (n,) user number
    k_of = np.where(last < max_len, 0, -(-(last - max_len + 1) // stride))  # target's window
    window = np.cumsum(n_windows)[user_of] - n_windows[user_of] + k_of
    col = np.where(last >= 0, last - end[window] + max_len - 1, -1)
    item, rating = log.item[train_pos], log.rating[train_pos]
    gap = np.where(new_user, 0, np.diff(seconds, prepend=seconds[:1])) / SECONDS_PER_DAY
    gaps = torch.from_numpy(gap.astype(np.float32))  # to the previous training event
    next_gaps = torch.cat([gaps[1:], torch.zeros(1)]) * torch.from_numpy(~np.r_[new_user[1:], True])
    mask_t, at_t = torch.from_numpy(mask), torch.from_numpy(at)

    def take(values: torch.Tensor, pad: float | int) -> torch.Tensor:
        return torch.where(mask_t, values[at_t], pad)

    windows = {
        "user": torch.from_numpy(user[starts[owner]]),
        "hist_item": take(item, 0),
        "hist_rating": take(rating, 0.0),
        "hist_gap": take(gaps, 0.0),  # from the previous event (0 at a user's first)
        "hist_mask": mask_t,
        "next_gap": take(next_gaps, 0.0),  # to the next event: each input's S5 step
    }
    order = np.argsort(window, kind="stable")
    targets = {
        "window": torch.from_numpy(window[order]),
        "col": torch.from_numpy(col[order]),
        "item": item[order],
        "rating": rating[order],
    }
    return WindowSet(windows, targets)


def iterate_batches(
    n: int, batch_size: int, *, shuffle: bool, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Index tensors of consecutive batches over 0..n-1, in a seeded permutation if shuffle."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    yield from order.split(batch_size)


def batch_to(batch: Batch, device: torch.device | str) -> Batch:
    """A batch with every tensor on `device`."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
