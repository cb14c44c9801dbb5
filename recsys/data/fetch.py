"""`recsys fetch`: get a MovieLens release and write data/<dataset>/ in the canonical format.

Sources: GroupLens (md5-verified download, cached), the ml-100k copy inside the RecBole wheel
on PyPI (sha256-verified, cached), or a local GroupLens zip / RecBole wheel. Every source
gives byte-identical ratings.csv and movies.csv.

`md5` replaces the expected checksum of the archive the source yields (the GroupLens zip, a
local file, or the PyPI wheel instead of its sha256); with `auto` it applies to GroupLens only.

Idempotence: the archive is always parsed and the canonical files rebuilt in a staging folder
beside data/<dataset>/; a file is replaced only when its bytes differ (`force` replaces it
anyway), so a repeated fetch leaves bytes and mtimes alone. Nothing besides ratings.csv and
movies.csv is ever written into data/<dataset>/, and the folder is only created once the whole
archive has parsed, so a failed fetch leaves it as it was (or absent).
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from recsys.data.canonical import RATINGS_COLUMNS, write_canonical
from recsys.data.movielens import read_archive, release
from recsys.errors import RecsysError
from recsys.etl.validate import (
    FILE_KINDS,
    Validation,
    os_reason,
    refuse_existing,
    remove_stale,
    screen_ratings,
    write_quarantine,
)
from recsys.io import atomic_path, md5_file

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"
PUBLISHED_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
}
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
# fmt: off
PIP_DOWNLOAD = (
    "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
    "--retries", "2", "--timeout", "15", RECBOLE_REQUIREMENT,
)
# fmt: on
OUTPUT_FILES = ("ratings.csv", "movies.csv")
QUARANTINE_FILE = "ratings.quarantine.csv"  # only written when the row rules reject rows
QUARANTINE_HEADER = ",".join(["row", "reason", *RATINGS_COLUMNS])  # its first line
QUARANTINE_HINT = "move it away and fetch again"
_HEX32 = re.compile(r"\b[0-9a-fA-F]{32}\b")
_TIMEOUT_S = 30


@dataclass(frozen=True)
class Archive:
    """A verified local archive and how it was obtained."""

    path: Path
    origin: str  # "grouplens", "pypi" or the local path
    detail: str  # e.g. "recbole-1.2.1 wheel, sha256 verified"


@dataclass(frozen=True)
class FetchResult:
    """What `fetch` wrote; `summary()` is the line the CLI prints."""

    out_dir: Path
    archive: Archive
    n_ratings: int
    n_users: int
    n_items: int
    n_movies: int
    ratings_md5: str
    changed: bool
    n_quarantined: int = 0  # rows the row rules rejected, in QUARANTINE_FILE

    def summary(self) -> str:
        """One human line: counts, source and the md5 of ratings.csv."""
        movies = f" ({self.n_movies:,} movies)" if self.n_movies != self.n_items else ""
        state = "" if self.changed else " (unchanged)"
        if self.n_quarantined:
            state += f"; {self.n_quarantined:,} bad rows in {self.out_dir / QUARANTINE_FILE}"
        return (
            f"{self.out_dir}: {self.n_ratings:,} ratings, {self.n_users:,} users, "
            f"{self.n_items:,} items{movies} from {self.archive.origin} ({self.archive.detail})"
            f" -> ratings.csv md5 {self.ratings_md5}{state}"
        )


def fetch(
    dataset: str = "ml-100k",
    source: str = "auto",
    data_dir: Path = Path("data"),
    md5: str | None = None,
    force: bool = False,
) -> FetchResult:
    """Get `dataset` from `source` (auto|grouplens|pypi|PATH) into data_dir/dataset/."""
    release(dataset)
    md5 = _check_md5_arg(md5)
    archive = acquire(dataset, source, md5)
    ratings, movies = read_archive(archive.path, dataset)
    out_dir = Path(data_dir) / dataset
    check_fetch_quarantine(out_dir / QUARANTINE_FILE, archive)  # before anything is written
    # the same row rules as `recsys validate` and the daily batches: bad rows are kept aside
    screened = screen_ratings(ratings)
    ratings = screened.valid
    changed = install(ratings, movies, out_dir, force=force)
    write_fetch_quarantine(screened, out_dir / QUARANTINE_FILE, archive)
    return FetchResult(
        out_dir=out_dir,
        archive=archive,
        n_ratings=len(ratings),
        n_users=int(ratings["user_id"].nunique()),
        n_items=int(ratings["item_id"].nunique()),
        n_movies=len(movies),
        ratings_md5=md5_file(out_dir / "ratings.csv"),
        changed=changed,
        n_quarantined=len(screened.quarantine),
    )


def check_fetch_quarantine(out: Path, archive: Archive) -> None:
    """Refuse to replace or remove the archive itself, or a file that is not our quarantine."""
    try:
        mode = os.stat(out).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as err:
        raise RecsysError(f"{out}: cannot check ({os_reason(err)}); {QUARANTINE_HINT}") from None
    refuse_existing(archive.path, out, mode, QUARANTINE_HEADER, QUARANTINE_HINT)


def write_fetch_quarantine(screened: Validation, out: Path, archive: Archive) -> None:
    """Write rejected rows beside ratings.csv and print why (at most 20 lines)."""
    if screened.quarantine.empty:
        remove_stale(out, QUARANTINE_HEADER)  # a stale file would describe an older fetch
        return
    hint = f"the rejected rows are not saved; {QUARANTINE_HINT} once it can be written"
    write_quarantine(screened, out, hint=hint)
    reasons = screened.quarantine["reason"].value_counts().to_dict()
    print(
        f"{archive.path}: {len(screened.quarantine):,} ratings rejected {reasons} -> {out}",
        file=sys.stderr,
    )


def _check_md5_arg(md5: str | None) -> str | None:
    """Normalise --md5 to lower-case hex, rejecting anything that is not 32 hex digits."""
    if md5 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5.strip()):
        raise RecsysError(f"--md5 {md5!r}: expected 32 hexadecimal digits")
    return md5.strip().lower()


def acquire(dataset: str, source: str, md5: str | None = None) -> Archive:
    """A verified archive of `dataset` from `source`; auto tries GroupLens, then PyPI."""
    if source == "grouplens":
        return from_grouplens(dataset, md5)
    if source == "pypi":
        return from_pypi(dataset, md5)
    if source == "auto":
        return _from_auto(dataset, md5)
    return from_path(Path(source).expanduser(), dataset, md5)


def _from_auto(dataset: str, md5: str | None) -> Archive:
    """GroupLens, then (ml-100k only) PyPI; if all fail, one line with every reason."""
    tried = []
    sources = [("grouplens", from_grouplens)]
    if dataset == "ml-100k":
        sources.append(("pypi", lambda name, _md5: from_pypi(name, None)))
    for name, get in sources:
        try:
            return get(dataset, md5)
        except RecsysError as err:
            tried.append(f"{name}: {_short(str(err))}")
    raise RecsysError(
        f"no source could provide {dataset} (tried {'; '.join(tried)}); download "
        f"{grouplens_url(dataset)} elsewhere and run "
        f"`recsys fetch --dataset {dataset} --source path/to/{dataset}.zip`"
    )


def _short(text: str, limit: int = 160) -> str:
    """Collapse whitespace and cut a reason to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cache_dir() -> Path:
    """Where downloaded archives are kept: $RECSYS_CACHE_DIR or ~/.cache/recsys."""
    return Path(os.environ.get("RECSYS_CACHE_DIR") or "~/.cache/recsys").expanduser()


def grouplens_url(dataset: str, suffix: str = "") -> str:
    """URL of a GroupLens archive (base overridable by $RECSYS_GROUPLENS_URL)."""
    base = os.environ.get("RECSYS_GROUPLENS_URL") or GROUPLENS_URL
    return f"{base.rstrip('/')}/{dataset}.zip{suffix}"


def hash_file(path: Path, algorithm: str) -> str:
    """Hex digest of a file (md5 or sha256)."""
    if algorithm == "md5":
        return md5_file(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, algorithm: str, expected: str, name: str | None = None) -> None:
    """Raise a RecsysError naming the file, expected and actual hash on a mismatch."""
    actual = hash_file(path, algorithm)
    if actual != expected.lower():
        trust = actual if algorithm == "md5" else hash_file(path, "md5")
        raise RecsysError(
            f"{name or path}: {algorithm} mismatch: expected {expected}, got {actual}; "
            f"pass --md5 {trust} if you trust this file"
        )


def from_grouplens(dataset: str, md5: str | None = None) -> Archive:
    """Download (or reuse from the cache) `<dataset>.zip` from GroupLens, md5-verified."""
    url = grouplens_url(dataset)
    cached = cache_dir() / f"{dataset}.zip"
    expected = md5 or PUBLISHED_MD5.get(dataset) or _published_md5(dataset)
    if cached.is_file() and md5_file(cached) == expected:
        return Archive(cached, "grouplens", f"cached {cached}, md5 verified")
    with atomic_path(cached) as tmp:
        _download(url, tmp)
        verify(tmp, "md5", expected, name=url)
    return Archive(cached, "grouplens", f"{url}, md5 verified")


def _published_md5(dataset: str) -> str:
    """The md5 GroupLens publishes in `<dataset>.zip.md5` (kept in the cache once read)."""
    cached = cache_dir() / f"{dataset}.zip.md5"
    if cached.is_file():
        text = cached.read_text(encoding="utf-8", errors="replace")
    else:
        text = _get(grouplens_url(dataset, ".md5")).decode("utf-8", errors="replace")
    found = _HEX32.search(text)
    if not found:
        raise RecsysError(f"{grouplens_url(dataset, '.md5')}: no md5 in {text[:80]!r}")
    if not cached.is_file():
        with atomic_path(cached) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return found.group(0).lower()


def _get(url: str) -> bytes:
    """The body of a small HTTP resource; network errors become a RecsysError."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            return resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise RecsysError(f"{url}: {_net_reason(err)}") from None


def _download(url: str, dest: Path) -> None:
    """Stream `url` into `dest` with a byte progress bar on stderr (hidden when not a TTY)."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with _progress(total, url.rsplit("/", 1)[-1]) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as err:
        raise RecsysError(f"{url}: {_net_reason(err)}") from None
    if total is not None and dest.stat().st_size != total:
        raise RecsysError(f"{url}: download truncated ({dest.stat().st_size} of {total} bytes)")


def _progress(total: int | None, desc: str) -> tqdm:
    """A bytes progress bar on stderr; tqdm hides it when stderr is not a terminal."""
    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
        file=sys.stderr, disable=None, leave=False,
    )  # fmt: skip


def _net_reason(err: BaseException) -> str:
    """A short reason for a failed request (HTTP status, refused, DNS failure, timeout)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return _short(str(err.reason), 100)
    return _short(str(err) or type(err).__name__, 100)


def from_pypi(dataset: str, md5: str | None = None) -> Archive:
    """The RecBole wheel from PyPI (via pip download, cached); only it holds ml-100k."""
    if dataset != "ml-100k":
        raise RecsysError(f"--source pypi provides only ml-100k (RecBole's copy), not {dataset}")
    algorithm, expected = ("md5", md5) if md5 else ("sha256", RECBOLE_SHA256)
    cached = cache_dir() / RECBOLE_WHEEL
    if cached.is_file() and hash_file(cached, algorithm) == expected:
        return Archive(cached, "pypi", f"cached recbole-1.2.1 wheel, {algorithm} verified")
    with tempfile.TemporaryDirectory(prefix="recsys-pip-") as tmp:
        wheel = _pip_download(Path(tmp))
        verify(wheel, algorithm, expected, name=f"{RECBOLE_WHEEL} from PyPI")
        with atomic_path(cached) as dest:
            shutil.copyfile(wheel, dest)
    return Archive(cached, "pypi", f"recbole-1.2.1 wheel, {algorithm} verified")


def _pip_download(dest: Path) -> Path:
    """Run `pip download` of the RecBole wheel (no dependencies, no install) into `dest`."""
    cmd = [sys.executable, "-m", "pip", *PIP_DOWNLOAD, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / RECBOLE_WHEEL
    if proc.returncode != 0 or not wheel.is_file():
        raise RecsysError(f"pip download {RECBOLE_REQUIREMENT} failed: {_pip_error(proc)}")
    return wheel


def _pip_error(proc: subprocess.CompletedProcess) -> str:
    """pip's last `ERROR:` line, else its last non-empty output line."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return _short((errors or lines or [f"exit code {proc.returncode}"])[-1])


def from_path(path: Path, dataset: str, md5: str | None = None) -> Archive:
    """A local GroupLens zip or RecBole wheel, checked against --md5 or the known checksum."""
    hint = f"pass a GroupLens {dataset}.zip or {RECBOLE_WHEEL}, or --source auto to download"
    _check_local_file(path, hint)
    try:
        return _verified(path, dataset, md5)
    except OSError as err:
        raise RecsysError(f"{path}: cannot read ({os_reason(err)}); {hint}") from None


def _check_local_file(path: Path, hint: str) -> None:
    """Raise unless `path` is a regular file: missing, a folder, a FIFO each say so."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise RecsysError(f"{path}: no such file; {hint}") from None
    except OSError as err:
        raise RecsysError(f"{path}: cannot read ({os_reason(err)}); {hint}") from None
    if stat.S_ISDIR(mode):
        raise RecsysError(f"{path}: is a directory; {hint}")
    if not stat.S_ISREG(mode):
        kind = FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
        raise RecsysError(f"{path}: is not a regular file but {kind}; {hint}")


def _verified(path: Path, dataset: str, md5: str | None) -> Archive:
    """`path` as an Archive once its checksum is verified (or its md5 reported)."""
    if md5:
        verify(path, "md5", md5)
        return Archive(path, str(path), "md5 verified")
    if path.suffix == ".whl":
        verify(path, "sha256", RECBOLE_SHA256)
        return Archive(path, str(path), "sha256 verified")
    if dataset in PUBLISHED_MD5:
        verify(path, "md5", PUBLISHED_MD5[dataset])
        return Archive(path, str(path), "published md5 verified")
    return Archive(path, str(path), f"md5 {md5_file(path)} not verified: pass --md5 to check")


def install(ratings: pd.DataFrame, movies: pd.DataFrame, out_dir: Path, force: bool) -> bool:
    """Write the canonical files into `out_dir`, replacing only changed ones; True if any."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent)
        )
    except OSError as err:
        raise RecsysError(f"{out_dir.parent}: cannot write ({err.strerror or err})") from None
    try:
        write_canonical(ratings, movies, stage)
        changed = [n for n in OUTPUT_FILES if force or not _same(stage / n, out_dir / n)]
        _move_into(stage, out_dir, changed)
    except OSError as err:
        raise RecsysError(f"{out_dir}: cannot write ({err.strerror or err})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return bool(changed)


def _same(a: Path, b: Path) -> bool:
    """Whether `b` exists with exactly the bytes of `a`."""
    return b.is_file() and filecmp.cmp(a, b, shallow=False)


def _move_into(stage: Path, out_dir: Path, names: list[str]) -> None:
    """Rename staged files into `out_dir`; a folder created here is removed on failure."""
    created = not out_dir.exists()
    try:
        out_dir.mkdir(exist_ok=True)
        for name in names:
            os.replace(stage / name, out_dir / name)
    except OSError:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
