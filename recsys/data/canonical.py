"""The canonical dataset files every source produces byte for byte.

`data/<dataset>/ratings.csv`: `user_id,item_id,rating,timestamp`, sorted by timestamp, user,
item; ratings written without a trailing `.0` (`4`, `3.5`); timestamps in epoch seconds.
`data/<dataset>/movies.csv`: `item_id,title,year,genres`, sorted by item_id; `year` is the last
`(YYYY)` in the title or empty; `genres` joined with `|`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import RecsysError
from recsys.io import atomic_path

RATINGS_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
MOVIES_COLUMNS = ["item_id", "title", "year", "genres"]
RATINGS_DTYPES = {"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"}
_YEAR = re.compile(r"\((\d{4})\)")


def year_from_title(title: str) -> str:
    """The last `(YYYY)` group in a MovieLens title, or '' when there is none."""
    years = _YEAR.findall(title)
    return years[-1] if years else ""


def sort_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes and row order: timestamp, then user, then item."""
    ratings = ratings[RATINGS_COLUMNS].astype(RATINGS_DTYPES)
    order = np.lexsort(
        (
            ratings["item_id"].to_numpy(),
            ratings["user_id"].to_numpy(),
            ratings["timestamp"].to_numpy(),
        )
    )
    return ratings.iloc[order].reset_index(drop=True)


def canonical_movies(movies: pd.DataFrame) -> pd.DataFrame:
    """Canonical movie columns, `year` derived from the title, sorted by item_id."""
    movies = movies[["item_id", "title", "genres"]].copy()
    movies["item_id"] = movies["item_id"].astype("int64")
    movies["title"] = movies["title"].astype(str)
    movies["year"] = movies["title"].map(year_from_title)
    movies["genres"] = movies["genres"].fillna("").astype(str)
    return movies[MOVIES_COLUMNS].sort_values("item_id", kind="stable").reset_index(drop=True)


def write_canonical(ratings: pd.DataFrame, movies: pd.DataFrame, out_dir: str | Path) -> None:
    """Write ratings.csv and movies.csv atomically; both are built before either is renamed."""
    out_dir = Path(out_dir)
    ratings = sort_ratings(ratings)
    movies = canonical_movies(movies)
    with (
        atomic_path(out_dir / "ratings.csv") as r_tmp,
        atomic_path(out_dir / "movies.csv") as m_tmp,
    ):
        ratings.to_csv(r_tmp, index=False, float_format="%g", lineterminator="\n")
        movies.to_csv(m_tmp, index=False, lineterminator="\n")


def read_ratings(path: str | Path) -> pd.DataFrame:
    """Read a canonical ratings.csv with its dtypes; a missing file says what to run."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: not found; run `recsys fetch` (or `recsys synth`) first")
    return pd.read_csv(path, dtype=RATINGS_DTYPES)
