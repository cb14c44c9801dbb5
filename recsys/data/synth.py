"""Seeded synthetic MovieLens-format ratings with planted temporal structure (`recsys synth`).

`synthesize(SynthConfig(rows, users, items, seed), out_dir)` writes the canonical `ratings.csv`
and `movies.csv` (see `canonical.py`); the same config gives byte-identical files. Exactly
`rows` ratings, integer stars 1-5, 1-based ids, each (user, item) pair at most once. Default
sizes: items = max(20, 5*sqrt(rows)), users = max(10, rows/100) raised so that rows <= 1/4 of
users*items (the density limit), at most rows/5. Planted structure (vectorised numpy):

- **Catalogue.** Each item belongs to one of 18 MovieLens genres (genre sizes from a
  Dirichlet(2) share). A genre is a *series*: its items in id order, titled
  `Synthetic <Genre> NNNN (YYYY)` with NNNN the place in the series and the year rising along
  it (1930-1999). Popularity within a genre is Zipf, P(place k) ∝ k^-0.8; each item has a
  quality bias ~ N(0, 0.5) stars.
- **Sessions and time gaps.** A user with n events has about 1 + n^0.6 sessions. A session
  break lasts 1 day + Exp(mean 6 days); inside a session the gap is 0 s (a same-second tie)
  with probability 0.6, else 1 s + Exp(mean 90 s), under 1 h. Users start uniformly over
  2000-01-01..2003-01-01. About 75 % of events share (user, timestamp) with another event
  (MovieLens: 76 %).
- **Gaps decide what comes next.** After an in-session gap (< 1 h) the next event is, with
  probability 0.75, a *continuation*: the next item of the same series (runs of a fresh pick
  plus its continuations average ~4 events). After a session break it is always a fresh pick.
  A user never rates an item twice: a fresh run that would overlap the user's earlier runs in
  that series moves to just after them (the next unseen episodes); the rare remaining repeat
  moves to the user's next unrated item.
- **Drifting tastes.** Each user has a start and a different end favourite genre (each chosen
  with probability proportional to genre size). A fresh pick at relative position w in [0, 1]
  of the user's timeline follows the taste with probability t (else it explores: the genre of
  a uniformly random item): the end genre with probability w, the start genre with 1-w; then a
  Zipf place in that genre. t = min(0.8, favourite-genre size / user's events), so heavy users
  in small catalogues explore more instead of exhausting their genres.
- **Ratings**: round and clip to 1..5 of 3.5 + user bias N(0, 0.35) + item quality + 0.8 x
  (1-w if the item's genre is the start genre, w if it is the end genre) - 0.15 per
  continuation beyond the second of a run (at most -1.5) + noise N(0, 0.9).
- **Counts.** Events per user: min(5, rows/users) + a lognormal(0, 1) share of the rest, capped
  at items/2; about 1.2x as many events are drawn, each user keeps its earliest ones and any
  shortfall is taken pro rata from users with spare events, so the total is exactly `rows`.

Measured on 50k rows (seeds 0-5, in each user's (timestamp, item) order): the next event has
the previous one's genre 74-75 % of the time after a gap < 1 h vs 26-28 % after a gap > 1 day,
and is the next item of the same series 67-68 % vs 2 %; for users with >= 40 events the mean
total-variation distance between first- and last-quarter genre histograms is 0.70-0.74 vs 0.26
between two random quarters; current-favourite-genre items average 3.93 stars vs 3.38, and
items 9+ of a run 2.53 vs 3.68 for fresh picks (seed 0). At 1M rows (larger genres, so
stronger tastes) the same-genre rates are 80 % vs 41 %, the series rates 68 % vs 1 % and the
distances 0.76 vs 0.21.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.data.canonical import RATINGS_COLUMNS, RATINGS_DTYPES, canonical_movies
from recsys.errors import RecsysError
from recsys.io import atomic_path

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
START_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z, seconds
START_SPAN = 3 * 365 * 86_400  # users start within 3 years, seconds
DAY = 86_400  # seconds
MAX_DENSITY = 0.25  # rows <= users * items * MAX_DENSITY
MAX_ROWS = 300_000_000  # keeps drawn-event indices (up to 4x rows) within int32
OVERSAMPLE = (1.2, 1.6, 2.5, 4.0)  # generated events per target event, one per attempt
CHUNK_ROWS = 1_000_000  # ratings.csv is written this many rows at a time

# Planted-structure strengths (documented in the module docstring).
ZIPF_EXPONENT = 0.8
QUALITY_SD = 0.5  # stars
SESSION_EXPONENT = 0.6  # sessions ≈ 1 + n**0.6
BREAK_MEAN_DAYS = 6.0
TIE_PROB = 0.6  # in-session gap is 0 s
SHORT_MEAN_S = 90.0  # in-session non-tie gap, seconds
CONTINUE_PROB = 0.75  # after an in-session gap
EXPLORE_PROB = 0.2  # at least; more for users with little room in their favourite genres
TASTE_ROOM = 1.0  # taste <= TASTE_ROOM * (favourite-genre size) / (user's events)
BASE, USER_SD, FAV_BONUS, NOISE_SD = 3.5, 0.35, 0.8, 0.9  # stars
FATIGUE_PER_STEP, FATIGUE_MAX_STEPS = 0.15, 10


class SynthConfig(BaseModel):
    """What `recsys synth` generates; invalid values raise a one-line RecsysError."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(gt=0, le=MAX_ROWS, description="number of ratings written")
    users: int | None = Field(default=None, gt=0, description="None: derived from rows")
    items: int | None = Field(default=None, gt=0, description="None: derived from rows")
    seed: int = Field(default=0, ge=0)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise RecsysError(_one_line(err)) from None

    @property
    def n_items(self) -> int:
        """Items: given, else about 5*sqrt(rows), at least 20."""
        return self.items if self.items is not None else max(20, round(5 * math.sqrt(self.rows)))

    @property
    def n_users(self) -> int:
        """Users: given, else about rows/100 (at least 10, enough for the density limit)."""
        if self.users is not None:
            return self.users
        dense = math.ceil(self.rows / (MAX_DENSITY * self.n_items))
        return max(1, min(max(10, self.rows // 100, dense), self.rows // 5))

    @model_validator(mode="after")
    def _feasible(self) -> SynthConfig:
        """Enough users for the rows, and few enough rows for users x items."""
        if self.n_users > self.rows:
            raise ValueError(f"users={self.n_users} exceeds rows={self.rows}")
        if self.rows > MAX_DENSITY * self.n_users * self.n_items:
            raise ValueError(
                f"rows={self.rows} is more than {MAX_DENSITY:g} of users*items="
                f"{self.n_users}*{self.n_items}; raise --users or --items"
            )
        return self


def _one_line(err: ValidationError) -> str:
    """The first validation error as `field: message`, plus a count of the others."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where + ': ' if where else ''}{msg}{more}"


@dataclass(frozen=True)
class Catalog:
    """Items in per-genre series lists; a *slot* is a place in the concatenated lists."""

    genre: np.ndarray  # (items,) int8 genre of each 0-based item
    place: np.ndarray  # (items,) int32 0-based place of each item in its genre's list
    quality: np.ndarray  # (items,) float32 stars
    order: np.ndarray  # (items,) int32 item at each slot (genre lists concatenated)
    start: np.ndarray  # (genres+1,) int64 first slot of each genre, then the item count
    slot_genre: np.ndarray  # (items,) int8 genre at each slot
    cdf: np.ndarray  # (items,) float64 genre + within-genre Zipf CDF at each slot


@dataclass(frozen=True)
class Users:
    """Per-user planted parameters, indexed by 0-based user."""

    start_genre: np.ndarray  # (users,) int8
    end_genre: np.ndarray  # (users,) int8, != start_genre when there are >= 2 genres
    bias: np.ndarray  # (users,) float32 stars
    t0: np.ndarray  # (users,) int64 first timestamp, epoch seconds
    target: np.ndarray  # (users,) int64 events wanted (sums to about rows)
    taste: np.ndarray  # (users,) float32 P(a fresh pick follows the user's taste)
    rotation: np.ndarray  # (users,) int64 where the user's probing for unseen slots wraps


@dataclass
class Draft:
    """Drawn events before dedup, user-major and in time order within a user (M events)."""

    counts: np.ndarray  # (users,) int64 events drawn per user
    user: np.ndarray  # (M,) int32
    pos: np.ndarray  # (M,) int32 place in the user's drawn sequence
    brk: np.ndarray  # (M,) bool gap before the event is a session break (>= 1 day)
    tie: np.ndarray  # (M,) bool gap before the event is 0 s
    step: np.ndarray  # (M,) int32 place in its run (0 = fresh pick)
    slot: np.ndarray  # (M,) int32 catalogue slot

    def subset(self, keep: np.ndarray) -> Draft:
        """The events where `keep` is True; counts become the kept counts per user."""
        counts = np.bincount(self.user[keep], minlength=self.counts.size).astype(np.int64)
        cols = (self.user, self.pos, self.brk, self.tie, self.step, self.slot)
        return Draft(counts, *(col[keep] for col in cols))


@dataclass(frozen=True)
class Sample:
    """The final `rows` ratings in canonical order, 0-based ids."""

    user: np.ndarray  # (rows,) int32
    item: np.ndarray  # (rows,) int32
    rating: np.ndarray  # (rows,) int8 stars
    ts: np.ndarray  # (rows,) int64 epoch seconds


def zipf_cdf(sizes: np.ndarray) -> np.ndarray:
    """Per slot: genre index + cumulative Zipf share of places up to it within its genre."""
    start = np.concatenate([[0], np.cumsum(sizes)])
    place = np.arange(start[-1]) - np.repeat(start[:-1], sizes)
    cum = np.cumsum((place + 1.0) ** -ZIPF_EXPONENT)
    before = np.repeat(np.concatenate([[0.0], cum[start[1:-1] - 1]]), sizes)
    total = np.repeat(cum[start[1:] - 1], sizes) - before
    return np.repeat(np.arange(sizes.size, dtype=np.float64), sizes) + (cum - before) / total


def make_catalog(rng: np.random.Generator, n_items: int) -> Catalog:
    """Assign items to genres (each genre's series in item-id order) and draw item quality."""
    n_genres = min(len(GENRES), n_items)
    share = rng.dirichlet(np.full(n_genres, 2.0))
    genre = np.concatenate([np.arange(n_genres), rng.choice(n_genres, n_items - n_genres, p=share)])
    genre = rng.permutation(genre).astype(np.int8)
    order = np.argsort(genre, kind="stable").astype(np.int32)  # by genre, then item id
    sizes = np.bincount(genre, minlength=n_genres)
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    place = np.empty(n_items, np.int32)
    place[order] = np.arange(n_items) - np.repeat(start[:-1], sizes)
    quality = rng.normal(0.0, QUALITY_SD, n_items).astype(np.float32)
    slot_genre = genre[order]
    return Catalog(genre, place, quality, order, start, slot_genre, zipf_cdf(sizes))


def user_targets(rng: np.random.Generator, rows: int, n_users: int, cap: int) -> np.ndarray:
    """Heavy-tailed events per user: min(5, rows/users) + lognormal share, capped; int64."""
    floor = min(5, rows // n_users)
    weight = rng.lognormal(0.0, 1.0, n_users)
    target = floor + np.floor((rows - floor * n_users) * weight / weight.sum())
    return np.minimum(target, cap).astype(np.int64)


def favourites(rng: np.random.Generator, cat: Catalog, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) genres per user, each the genre of a random item; end != start if possible."""
    n_genres = cat.start.size - 1
    start = cat.genre[rng.integers(0, cat.genre.size, n)].astype(np.int64)
    end = cat.genre[rng.integers(0, cat.genre.size, n)].astype(np.int64)
    same = end == start
    if n_genres > 1:
        end[same] = (start[same] + rng.integers(1, n_genres, int(same.sum()))) % n_genres
    return start.astype(np.int8), end.astype(np.int8)


def make_users(rng: np.random.Generator, config: SynthConfig, cat: Catalog) -> Users:
    """Favourite genres, taste strength, bias, first timestamp and target count per user."""
    n = config.n_users
    start, end = favourites(rng, cat, n)
    bias = rng.normal(0.0, USER_SD, n).astype(np.float32)
    t0 = START_EPOCH + rng.integers(0, START_SPAN, n)
    target = user_targets(rng, config.rows, n, max(1, config.n_items // 2))
    sizes = cat.start[1:] - cat.start[:-1]
    room = np.minimum(sizes[start], sizes[end]) / target  # favourite-genre items per event
    taste = np.minimum(1.0 - EXPLORE_PROB, TASTE_ROOM * room).astype(np.float32)
    rotation = rng.integers(0, cat.genre.size, n)
    return Users(start, end, bias, t0, target, taste, rotation)


def user_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user int32, position within user int32) for user-major events."""
    user = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    pos = np.arange(user.size, dtype=np.int32)
    pos -= np.repeat((np.cumsum(counts) - counts).astype(np.int32), counts)
    return user, pos


def drift_weight(users: Users, user: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """w in [0, 1] (float32): how far along its target count each event is."""
    span = np.maximum(users.target - 1, 1).astype(np.float32)
    return np.minimum(pos.astype(np.float32) / span[user], np.float32(1.0))


def gap_kinds(
    rng: np.random.Generator, users: Users, user: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(session break, 0-second tie) flags per event; a user's first event is a break."""
    sessions = 1.0 + users.target.astype(np.float64) ** SESSION_EXPONENT
    p_break = ((sessions - 1.0) / np.maximum(users.target - 1, 1)).astype(np.float32)
    brk = rng.random(user.size, dtype=np.float32) < p_break[user]
    brk |= pos == 0
    tie = ~brk & (rng.random(user.size, dtype=np.float32) < TIE_PROB)
    return brk, tie


def runs(rng: np.random.Generator, brk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fresh rows, run id per event, place in run) where a run = a fresh pick + continuations."""
    fresh = brk | (rng.random(brk.size, dtype=np.float32) >= CONTINUE_PROB)
    fresh_rows = np.flatnonzero(fresh)
    run_id = np.cumsum(fresh, dtype=np.int32) - 1
    step = np.arange(brk.size, dtype=np.int32)
    step -= fresh_rows.astype(np.int32)[run_id]
    return fresh_rows, run_id, step


def fresh_slots(
    rng: np.random.Generator, cat: Catalog, users: Users, user: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Catalogue slots (int32) of fresh picks: taste or explored genre, then a Zipf place."""
    explore = rng.random(user.size, dtype=np.float32) >= users.taste[user]
    late = rng.random(user.size, dtype=np.float32) < w
    genre = np.where(late, users.end_genre[user], users.start_genre[user]).astype(np.int64)
    genre[explore] = cat.genre[rng.integers(0, cat.genre.size, int(explore.sum()))]
    slot = np.searchsorted(cat.cdf, genre + rng.random(user.size), side="right")
    return np.clip(slot, cat.start[genre], cat.start[genre + 1] - 1).astype(np.int32)


def group_starts(*keys: np.ndarray) -> np.ndarray:
    """Bool mask: True where any of the (sorted) keys differs from the previous row."""
    new = np.ones(keys[0].size, bool)
    new[1:] = False
    for key in keys:
        new[1:] |= key[1:] != key[:-1]
    return new


def place_runs(cat: Catalog, user: np.ndarray, fresh: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Start place (int64, unwrapped) of each run so a user's runs in a genre never overlap.

    Interval parking at once: within each (user, genre), runs sorted by (fresh place, time)
    start at max(own place, end of the previous run + 1), i.e. cummax(a - 1 - C) + C + 1 with
    C the lengths of the runs before. A run that collides moves to just after the block.
    """
    order = np.argsort(user.astype(np.int64) * cat.order.size + fresh, kind="stable")
    s_slot = fresh[order]
    genre = cat.slot_genre[s_slot]
    new = group_starts(user[order], genre)
    group = np.cumsum(new, dtype=np.int64) - 1
    before = np.cumsum(length[order], dtype=np.int64)
    before -= length[order]
    before -= before[new][group]  # (R,) length of earlier runs in the group
    total = int(length.sum())  # events: bounds C, so groups stay apart after the shift
    offset = group * (cat.order.size + 2 * total + 4) + total + 2 - before
    place = s_slot - cat.start[genre] - 1 + offset  # (R,) a - 1 - C, shifted >= 0 per group
    np.maximum.accumulate(place, out=place)
    place -= offset - 1  # cummax(a - 1 - C) + C + 1
    out = np.empty(order.size, np.int64)
    out[order] = place
    return out


def series_slots(
    cat: Catalog, fresh: np.ndarray, place: np.ndarray, run_id: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Slot (M,) int32 `step` places after its run's start place in the genre list, wrapping."""
    genre = cat.slot_genre[fresh]
    first = cat.start[genre].astype(np.int32)  # (R,)
    size = (cat.start[1:] - cat.start[:-1])[genre].astype(np.int32)
    slot = (place % size).astype(np.int32)[run_id]
    slot += step
    slot %= size[run_id]
    slot += first[run_id]
    return slot


def draft(seeds: list[np.random.SeedSequence], cat: Catalog, users: Users, factor: float) -> Draft:
    """Draw about `factor` times each user's target events with gaps, runs and desired slots."""
    r_gap, r_run, r_pick = (np.random.default_rng(s) for s in seeds)
    counts = np.ceil(users.target * factor).astype(np.int64) + 3
    user, pos = user_index(counts)
    brk, tie = gap_kinds(r_gap, users, user, pos)
    fresh_rows, run_id, step = runs(r_run, brk)
    run_user = user[fresh_rows]
    w = drift_weight(users, run_user, pos[fresh_rows])
    fresh = fresh_slots(r_pick, cat, users, run_user, w)
    length = np.diff(np.append(fresh_rows, user.size))
    place = place_runs(cat, run_user, fresh, length)
    del fresh_rows, w, run_user, length
    slot = series_slots(cat, fresh, place, run_id, step)
    return Draft(counts, user, pos, brk, tie, step, slot)


def next_free(occupied: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Distinct free keys (int64) for sorted `wanted` keys: the next ones not in `occupied`.

    Works in free-slot numbering: key p is free slot p - #occupied below p; movers wanting the
    same free slot take the following ones (cummax), then map back through the occupied keys.
    `occupied` (sorted, distinct int64) is overwritten.
    """
    free = wanted - np.searchsorted(occupied, wanted)
    k = np.arange(free.size, dtype=np.int64)
    free = np.maximum.accumulate(free - k) + k
    occupied -= np.arange(occupied.size, dtype=np.int32)  # in place: free slots below each
    return free + np.searchsorted(occupied, free, side="right")


def resolve_repeats(
    user: np.ndarray, slot: np.ndarray, users: Users, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """(slot int32, ok bool): a repeated (user, slot) moves to the user's next free slot.

    The first occurrence in time keeps its slot; later ones move on along the catalogue (mostly
    within the same genre list), wrapping at the user's random rotation point; not ok past it.
    """
    key = user.astype(np.int64) * n_items
    key += (slot - users.rotation[user]) % n_items  # (M,) user-major rotated key
    order = np.argsort(key, kind="stable")
    key = key[order]
    repeat = np.zeros(key.size, bool)
    np.equal(key[1:], key[:-1], out=repeat[1:])
    movers = order[repeat]
    del order
    wanted = key[repeat]
    key = key[~repeat]
    moved = next_free(key, wanted)
    del key
    slot, ok = slot.copy(), np.ones(slot.size, bool)
    ok[movers] = moved // n_items == user[movers]
    slot[movers] = (moved % n_items + users.rotation[user[movers]]) % n_items
    return slot, ok


def keep_counts(available: np.ndarray, target: np.ndarray, rows: int) -> np.ndarray | None:
    """Events kept per user: its target where available; any shortfall from spare, pro rata."""
    keep = np.minimum(available, target)
    short = rows - int(keep.sum())
    spare = available - keep
    if short > int(spare.sum()):
        return None
    if short > 0:
        extra = (spare * (short / spare.sum())).astype(np.int64)  # floor, <= spare
        left = spare - extra
        before = np.cumsum(left) - left
        keep += extra + np.clip(short - int(extra.sum()) - before, 0, left)  # rest in id order
    return keep


def select(d: Draft, ok: np.ndarray, target: np.ndarray, rows: int) -> np.ndarray | None:
    """Bool mask (M,) of exactly `rows` ok events, each user's earliest ones; None if short."""
    quota = keep_counts(np.bincount(d.user[ok], minlength=target.size), target, rows)
    if quota is None:
        return None
    rank = np.cumsum(ok, dtype=np.int64)  # ok events so far, inclusive
    first = np.cumsum(d.counts) - d.counts
    rank -= (rank[first] - ok[first])[d.user]
    return ok & (rank <= quota[d.user])


def timestamps(rng: np.random.Generator, users: Users, d: Draft) -> np.ndarray:
    """Epoch seconds (M,) int64: user start + cumulated gaps (breaks >= 1 day, short < 1 h)."""
    gap = np.zeros(d.user.size, np.int64)  # seconds before each event
    n_break = int(d.brk.sum())
    gap[d.brk] = DAY + (rng.standard_exponential(n_break) * BREAK_MEAN_DAYS * DAY).astype(np.int64)
    short = ~d.brk & ~d.tie
    seconds = 1.0 + np.minimum(rng.standard_exponential(int(short.sum())) * SHORT_MEAN_S, 3598.0)
    gap[short] = seconds.astype(np.int64)
    first = np.cumsum(d.counts) - d.counts
    gap[first] = 0
    ts = np.cumsum(gap, out=gap)
    ts += (users.t0 - ts[first])[d.user]
    return ts


def rate(
    rng: np.random.Generator, cat: Catalog, users: Users, user: np.ndarray, item: np.ndarray,
    w: np.ndarray, step: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Integer stars 1..5 (int8) from biases, drifting favourite bonus, fatigue and noise."""
    genre = cat.genre[item]
    fav = (1.0 - w) * (genre == users.start_genre[user]) + w * (genre == users.end_genre[user])
    score = BASE + users.bias[user] + cat.quality[item] + np.float32(FAV_BONUS) * fav
    fatigue = np.clip(step.astype(np.float32) - 2.0, 0.0, FATIGUE_MAX_STEPS)
    score -= np.float32(FATIGUE_PER_STEP) * fatigue
    score += np.float32(NOISE_SD) * rng.standard_normal(item.size, dtype=np.float32)
    return np.clip(np.rint(score), 1, 5).astype(np.int8)


def canonical_order(user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row order by (timestamp, user, item) for user-major, per-user time-ordered events."""
    new = np.ones(ts.size, bool)
    new[1:] = (ts[1:] != ts[:-1]) | (user[1:] != user[:-1])
    group = np.cumsum(new, dtype=np.int64) - 1  # (user, timestamp) tie groups
    group *= int(item.max(initial=0)) + 1
    group += item
    by_item = np.argsort(group, kind="stable")
    del group
    return by_item[np.argsort(ts[by_item], kind="stable")]  # stable: keeps (user, item) order


def finish(
    rng: np.random.Generator, cat: Catalog, users: Users, d: Draft, ts: np.ndarray
) -> Sample:
    """The kept events with items and ratings, in canonical order."""
    item = cat.order[d.slot]
    w = drift_weight(users, d.user, d.pos)
    rating = rate(rng, cat, users, d.user, item, w, d.step)
    del w
    order = canonical_order(d.user, item, ts)
    return Sample(d.user[order], item[order], rating[order], ts[order])


def attempt(
    config: SynthConfig, cat: Catalog, users: Users, factor: float, number: int
) -> Sample | None:
    """One draw of `factor` x target events; None when unique pairs fall short of `rows`."""
    seeds = np.random.SeedSequence([config.seed, number]).spawn(5)
    d = draft(seeds[:3], cat, users, factor)
    d.slot, ok = resolve_repeats(d.user, d.slot, users, config.n_items)
    keep = select(d, ok, users.target, config.rows)
    del ok
    if keep is None:
        return None
    ts = timestamps(np.random.default_rng(seeds[3]), users, d)[keep]
    d = d.subset(keep)
    del keep
    return finish(np.random.default_rng(seeds[4]), cat, users, d, ts)


def build(config: SynthConfig) -> tuple[Sample, Catalog]:
    """Exactly `rows` ratings in canonical order plus the catalogue; retries with more draws."""
    seeds = np.random.SeedSequence(config.seed).spawn(2)
    r_cat, r_users = (np.random.default_rng(s) for s in seeds)
    cat = make_catalog(r_cat, config.n_items)
    users = make_users(r_users, config, cat)
    for number, factor in enumerate(OVERSAMPLE):
        sample = attempt(config, cat, users, factor, number)
        if sample is not None:
            return sample, cat
    raise RecsysError(
        f"could not draw {config.rows} distinct (user, item) pairs from "
        f"{config.n_users} users x {config.n_items} items; raise --users or --items"
    )


def ratings_frame(sample: Sample, lo: int, hi: int) -> pd.DataFrame:
    """Rows lo..hi of already-sorted events as a canonical ratings frame (1-based ids)."""
    frame = pd.DataFrame(
        {
            "user_id": sample.user[lo:hi] + 1,
            "item_id": sample.item[lo:hi] + 1,
            "rating": sample.rating[lo:hi],
            "timestamp": sample.ts[lo:hi],
        }
    )
    return frame[RATINGS_COLUMNS].astype(RATINGS_DTYPES)


def write_ratings_chunk(fh: Any, frame: pd.DataFrame, header: bool) -> None:
    """Append a canonical ratings frame exactly as `write_canonical` formats it."""
    frame.to_csv(fh, index=False, header=header, float_format="%g", lineterminator="\n")


def movies_frame(cat: Catalog) -> pd.DataFrame:
    """movies.csv rows: `Synthetic <Genre> NNNN (YYYY)`; the year rises along each series."""
    size = (cat.start[1:] - cat.start[:-1])[cat.genre]
    year = 1930 + (cat.place.astype(np.int64) * 70) // size
    names = np.array(GENRES)[cat.genre]
    titles = [
        f"Synthetic {g} {p + 1:04d} ({y})"
        for g, p, y in zip(names, cat.place.tolist(), year.tolist(), strict=True)
    ]
    item_id = np.arange(1, cat.genre.size + 1)
    return pd.DataFrame({"item_id": item_id, "title": titles, "genres": names})


def write_dataset(sample: Sample, cat: Catalog, out_dir: Path) -> None:
    """Write ratings.csv in chunks and movies.csv; both are complete before either is renamed."""
    movies = canonical_movies(movies_frame(cat))
    with (
        atomic_path(out_dir / "ratings.csv") as r_tmp,
        atomic_path(out_dir / "movies.csv") as m_tmp,
    ):
        with open(r_tmp, "w", encoding="utf-8", newline="") as fh:
            for lo in range(0, sample.ts.size, CHUNK_ROWS):
                write_ratings_chunk(fh, ratings_frame(sample, lo, lo + CHUNK_ROWS), header=lo == 0)
        movies.to_csv(m_tmp, index=False, lineterminator="\n")


def synthesize(config: SynthConfig, out_dir: Path) -> str:
    """Generate and write the dataset into `out_dir`; return a one-line summary."""
    began = time.perf_counter()
    out_dir = Path(out_dir)
    sample, cat = build(config)
    write_dataset(sample, cat, out_dir)
    span = [datetime.fromtimestamp(int(t), UTC).date() for t in (sample.ts[0], sample.ts[-1])]
    return (
        f"synth: {sample.ts.size} ratings, {config.n_users} users, {config.n_items} items, "
        f"{span[0]}..{span[1]}, {time.perf_counter() - began:.1f}s -> {out_dir}"
    )
