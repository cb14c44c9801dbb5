"""Atomic, durable file writes: a killed process never leaves a file that looks valid, and a
finished write survives a power cut.

The new content goes to a temp file beside the target (`.NAME.XXXX.tmp`), is flushed to disk
(fsync), renamed over the target in one step, and the folder is fsynced so the rename itself
is on disk. A process killed at any point leaves the old file whole (plus, at worst, a temp
file, which no reader opens). An OS refusal (read-only folder, full disk) is one WriteError
line naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import RecsysError

DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class WriteError(RecsysError, OSError):
    """The OS refused an atomic write: one line for the user (a RecsysError), and still an
    OSError for callers that explain a refusal in their own words."""

    def __init__(self, target: Path, err: OSError):
        reason = err.strerror or str(err) or type(err).__name__
        super().__init__(err.errno, reason, str(target))
        if err.errno in DENIED:
            advice = f"make {target.parent} writable, then run again"
        elif err.errno == errno.ENOSPC:
            advice = f"free space on the disk of {target.parent}, then run again"
        else:
            advice = f"check {target.parent}, then run again"
        self.message = f"{target}: cannot write ({reason}); the old file is untouched; {advice}"

    def __str__(self) -> str:
        return self.message


def fsync_path(path: Path) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds, fsync it, rename it over
    `path` and fsync the folder. Raises WriteError when the OS refuses."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise WriteError(target, err) from err
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        fsync_path(tmp_path)  # the data is on disk before the name points at it
        os.replace(tmp_path, target)
        fsync_path(target.parent)  # and the rename is on disk before we report success
    except WriteError:
        raise
    except OSError as err:  # e.g. the disk filled up while the block wrote
        raise WriteError(target, err) from err
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, keys sorted, so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a DataFrame as parquet atomically, without pandas metadata (stable bytes)."""
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
