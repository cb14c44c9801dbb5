"""`recsys synth`: seeded, exact-size, canonical files with measurable planted structure."""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.canonical import write_canonical
from recsys.data.synth import (
    GENRES,
    SynthConfig,
    build,
    keep_counts,
    make_catalog,
    next_free,
    place_runs,
    synthesize,
)
from recsys.errors import RecsysError

HOUR, DAY = 3600, 86_400  # seconds
TITLE = re.compile(r"^Synthetic (.+) (\d{4,}) \((\d{4})\)$")


def md5s(folder: Path) -> dict[str, str]:
    """md5 of every file in `folder`, by name."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ratings.csv and movies.csv as frames (movies with genre code and series number)."""
    ratings = pd.read_csv(folder / "ratings.csv")
    movies = pd.read_csv(folder / "movies.csv", keep_default_na=False)
    parts = movies["title"].str.extract(TITLE)
    movies["series_no"] = parts[1].astype(int)
    movies["genre_code"] = movies["genres"].map({g: i for i, g in enumerate(GENRES)})
    return ratings, movies


def user_sequences(ratings: pd.DataFrame, movies: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-event arrays in each user's (timestamp, item) order, the order a model reads them."""
    r = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    meta = movies.set_index("item_id")
    return {
        "user": r["user_id"].to_numpy(),
        "ts": r["timestamp"].to_numpy(),
        "genre": meta.loc[r["item_id"], "genre_code"].to_numpy(),
        "series_no": meta.loc[r["item_id"], "series_no"].to_numpy(),
    }


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 50k-row dataset, generated once for the structure tests."""
    out = tmp_path_factory.mktemp("synth50k")
    synthesize(SynthConfig(rows=50_000, seed=0), out_dir=out)
    return load(out)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synthesize(SynthConfig(rows=3000, seed=seed), out_dir=tmp_path / name)
    assert md5s(tmp_path / "a") == md5s(tmp_path / "b")
    differs = {k for k, v in md5s(tmp_path / "c").items() if md5s(tmp_path / "a")[k] != v}
    assert differs == {"ratings.csv", "movies.csv"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": 5000, "seed": 1},
        {"rows": 1},
        {"rows": 40, "users": 4, "items": 40},  # at the density limit
        {"rows": 2000, "users": 2000, "items": 5},  # fewer items than genres
        {"rows": 20_000, "users": 20, "items": 4000},  # 1000 events per user
    ],
)
def test_files_are_exact_and_canonical(tmp_path: Path, kwargs: dict) -> None:
    config = SynthConfig(**kwargs)
    synthesize(config, out_dir=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["movies.csv", "ratings.csv"]
    ratings, movies = load(tmp_path / "out")
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(ratings) == config.rows
    assert ratings["rating"].isin([1, 2, 3, 4, 5]).all()
    assert ratings["user_id"].between(1, config.n_users).all()
    assert movies["item_id"].tolist() == list(range(1, config.n_items + 1))
    assert ratings["item_id"].between(1, config.n_items).all()
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    key = ratings[["timestamp", "user_id", "item_id"]].to_numpy()
    assert (np.lexsort(key.T[::-1]) == np.arange(len(key))).all()
    assert ratings["timestamp"].min() >= 946_684_800  # 2000-01-01


def test_bytes_equal_write_canonical(tmp_path: Path) -> None:
    synthesize(SynthConfig(rows=4000, seed=2), out_dir=tmp_path / "synth")
    ratings = pd.read_csv(tmp_path / "synth" / "ratings.csv")
    movies = pd.read_csv(tmp_path / "synth" / "movies.csv", keep_default_na=False)
    write_canonical(ratings.sample(frac=1.0, random_state=0), movies, tmp_path / "canon")
    assert md5s(tmp_path / "synth") == md5s(tmp_path / "canon")


def test_movies_titles_years_genres(tmp_path: Path) -> None:
    synthesize(SynthConfig(rows=3000), out_dir=tmp_path)
    _, movies = load(tmp_path)
    parts = movies["title"].str.extract(TITLE)
    assert parts.notna().all().all()
    assert (parts[0] == movies["genres"]).all()
    assert (parts[2].astype(int) == movies["year"]).all()
    assert movies["year"].between(1930, 1999).all()
    assert set(movies["genres"]) == set(GENRES)
    for _, group in movies.groupby("genres"):  # each genre is one series numbered 1..n
        assert sorted(group["series_no"]) == list(range(1, len(group) + 1))


def test_short_gaps_continue_the_series(big: tuple) -> None:
    seq = user_sequences(*big)
    same_user = seq["user"][1:] == seq["user"][:-1]
    gap = np.diff(seq["ts"])[same_user]  # seconds
    same_genre = (seq["genre"][1:] == seq["genre"][:-1])[same_user]
    next_no = (seq["series_no"][1:] == seq["series_no"][:-1] + 1)[same_user] & same_genre
    short, long = gap < HOUR, gap > DAY
    assert short.mean() > 0.5 and long.mean() > 0.05
    assert same_genre[short].mean() > same_genre[long].mean() + 0.3
    assert next_no[short].mean() > 0.5 > 0.1 > next_no[long].mean()


def genre_tv(user: np.ndarray, genre: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-user total-variation distance between genre histograms of masks a and b."""
    n_users, n_genres = user.max() + 1, len(GENRES)
    hists = [
        np.bincount(user[m] * n_genres + genre[m], minlength=n_users * n_genres).reshape(
            n_users, n_genres
        )
        for m in (a, b)
    ]
    probs = [h / np.maximum(h.sum(1, keepdims=True), 1) for h in hists]
    tv = 0.5 * np.abs(probs[0] - probs[1]).sum(1)
    return tv[(hists[0].sum(1) > 0) & (hists[1].sum(1) > 0)]


def test_tastes_drift_over_each_timeline(big: tuple) -> None:
    seq = user_sequences(*big)
    user, genre = seq["user"], seq["genre"]
    counts = np.bincount(user)
    first = np.cumsum(counts) - counts
    rank = np.arange(user.size) - first[user]
    quarter = 4 * rank // counts[user]  # 0..3 along the user's timeline
    by_user_random = np.lexsort((np.random.default_rng(0).random(user.size), user))
    shuffled = np.empty_like(rank)
    shuffled[by_user_random] = rank  # a random permutation of ranks within each user
    shuffled = 4 * shuffled // counts[user]  # random quarters of the same size
    busy = counts[user] >= 40
    drift = genre_tv(user, genre, busy & (quarter == 0), busy & (quarter == 3))
    noise = genre_tv(user, genre, busy & (shuffled == 0), busy & (shuffled == 3))
    assert len(drift) >= 100
    assert drift.mean() > noise.mean() + 0.25


def test_most_events_share_a_timestamp(big: tuple) -> None:
    ratings, _ = big
    shared = ratings.duplicated(["user_id", "timestamp"], keep=False).mean()
    assert 0.5 < shared < 0.95


def test_config_defaults_and_one_line_errors() -> None:
    config = SynthConfig(rows=1_000_000)
    assert (config.n_users, config.n_items) == (10_000, 5000)
    assert SynthConfig(rows=1000).n_users * SynthConfig(rows=1000).n_items >= 4 * 1000
    for bad in ({"rows": 0}, {"rows": -5}, {"rows": 10, "users": 0}, {"rows": 10, "x": 1}):
        with pytest.raises(RecsysError) as err:
            SynthConfig(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(RecsysError, match="raise --users or --items"):
        SynthConfig(rows=1000, users=2, items=100)


def test_keep_counts_hits_rows_exactly() -> None:
    available, target = np.array([5, 10, 0, 7]), np.array([6, 4, 3, 7])
    keep = keep_counts(available, target, rows=19)
    assert keep.sum() == 19 and (keep <= available).all()
    assert keep_counts(available, target, rows=23) is None


def test_next_free_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        occupied = np.unique(rng.integers(0, 60, 30))
        wanted = np.sort(rng.integers(0, 60, 10))
        got = next_free(occupied.copy(), wanted)
        taken, expect = set(occupied.tolist()), []
        for w in wanted.tolist():  # the same greedy rule, one at a time
            while w in taken:
                w += 1
            taken.add(w)
            expect.append(w)
        assert sorted(got.tolist()) == sorted(expect)
        assert not set(got.tolist()) & set(occupied.tolist())


def test_place_runs_never_overlap_within_a_genre() -> None:
    rng = np.random.default_rng(1)
    cat = make_catalog(rng, 300)
    user = np.sort(rng.integers(0, 10, 2000)).astype(np.int32)
    fresh = rng.integers(0, 300, 2000).astype(np.int32)
    length = rng.integers(1, 6, 2000)
    place = place_runs(cat, user, fresh, length)
    own = fresh - cat.start[cat.slot_genre[fresh]]
    assert (place >= own).all()
    for key in set(zip(user.tolist(), cat.slot_genre[fresh].tolist(), strict=True)):
        idx = np.flatnonzero((user == key[0]) & (cat.slot_genre[fresh] == key[1]))
        spans = sorted((place[i], place[i] + length[i]) for i in idx)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_build_is_deterministic_in_memory() -> None:
    a, _ = build(SynthConfig(rows=2000, seed=9))
    b, _ = build(SynthConfig(rows=2000, seed=9))
    for name in ("user", "item", "rating", "ts"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.user.dtype == np.int32 and a.rating.dtype == np.int8 and a.ts.dtype == np.int64


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m recsys.cli synth ARGS`."""
    cmd = [sys.executable, "-m", "recsys.cli", "synth", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    proc = run_cli("--rows", "2000", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "2000 ratings" in proc.stdout and str(tmp_path / "out") in proc.stdout
    assert len(pd.read_csv(tmp_path / "out" / "ratings.csv")) == 2000


@pytest.mark.parametrize("rows", ["0", "-3"])
def test_cli_bad_rows_is_one_line_error(tmp_path: Path, rows: str) -> None:
    proc = run_cli("--rows", rows, "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("recsys synth: error: rows")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
