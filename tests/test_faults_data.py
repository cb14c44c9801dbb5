"""Faults in the data path, injected for real: a write killed half-way, a read-only folder, a
corrupted DVC cache object and bytes damaged in place. Each test checks that the old content
survives, the error is one line saying what to do, and the system works again afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.cli import main as recsys_main
from recsys.config import SplitParams
from recsys.data.canonical import write_canonical
from recsys.etl.split import run_split
from recsys.io import md5_file, write_json
from tests.conftest import PROJECT_ROOT, dvc, git, tiny_ratings
from tests.test_etl import KILL_MID_WRITE
from tests.test_pipeline import use_tiny_dataset

SPLIT_FILES = ("train", "val", "test", "users", "items", "dropped", "quarantine", "meta")


def split_stage(ratings: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m recsys.etl.split` as DVC runs it, with this project's params.yaml."""
    cmd = [sys.executable, "-m", "recsys.etl.split", "--ratings", str(ratings), "--out",
           str(out), "--params", str(PROJECT_ROOT / "params.yaml")]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)


def split_md5s(out: Path) -> dict[str, str]:
    return {p.name: md5_file(p) for p in sorted(out.iterdir()) if not p.name.startswith(".")}


@pytest.fixture
def built_split(tmp_path: Path) -> tuple[Path, Path]:
    """A ratings file and the split built from it: (ratings.csv, split folder)."""
    movies = pd.DataFrame(columns=["item_id", "title", "genres"])
    write_canonical(tiny_ratings(), movies, tmp_path / "data")
    ratings, out = tmp_path / "data" / "ratings.csv", tmp_path / "split"
    run_split(ratings, out, SplitParams())
    return ratings, out


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(("fsync dir" if stat.S_ISDIR(info.st_mode) else "fsync file", info.st_ino))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "deep" / "doc.json"
    write_json(target, {"a": 1})
    file_ino, dir_ino = target.stat().st_ino, target.parent.stat().st_ino
    assert events == [("fsync file", file_ino), ("replace", file_ino), ("fsync dir", dir_ino)]
    assert json.loads(target.read_text()) == {"a": 1}


def test_kill_during_a_write_leaves_the_old_file_whole(built_split, tmp_path: Path):
    ratings, out = built_split
    before = split_md5s(out)
    killer = tmp_path / "killer"
    killer.mkdir()
    (killer / "sitecustomize.py").write_text(KILL_MID_WRITE)  # half a parquet, then SIGKILL
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(killer), str(PROJECT_ROOT)])}
    crashed = split_stage(ratings, out, env)
    assert crashed.returncode == -9, crashed.stderr
    temps = [p for p in out.iterdir() if p.name.startswith(".train.parquet.")]
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the write was under way ...
    assert split_md5s(out) == before  # ... and every file under its own name is the old one
    pd.read_parquet(out / "train.parquet")  # readable, not half a file

    rerun = split_stage(ratings, out)  # the system keeps working: the same split again
    assert rerun.returncode == 0, rerun.stderr
    assert split_md5s(out) == before


def make_read_only(folder: Path) -> None:
    """chmod 555; as root (which chmod does not stop) also the immutable flag, else skip."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.touch()
    except PermissionError:
        return
    probe.unlink()
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        return
    folder.chmod(0o755)
    pytest.skip("cannot make a folder read-only here (root without chattr +i)")


def make_writable(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_read_only_output_folder_is_one_line_and_keeps_the_old_split(built_split):
    ratings, out = built_split
    before = split_md5s(out)
    make_read_only(out)
    try:
        refused = split_stage(ratings, out)
    finally:
        make_writable(out)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr  # no traceback
    assert re.fullmatch(
        rf"split: error: {re.escape(str(out / 'train.parquet'))}: cannot write "
        r"\((Permission denied|Operation not permitted)\); the old file is untouched; "
        rf"make {re.escape(str(out))} writable, then run again",
        lines[0],
    ), lines[0]
    assert split_md5s(out) == before  # nothing lost, nothing half-written
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    rerun = split_stage(ratings, out)  # writable again: the stage works
    assert rerun.returncode == 0, rerun.stderr


def verify(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """`recsys status --verify` in `repo`: exit code and what it printed."""
    monkeypatch.chdir(repo)
    capsys.readouterr()
    code = recsys_main(["status", "--verify"])
    return code, capsys.readouterr().out


def cache_object(repo: Path, folder: str, name: str) -> Path:
    """The DVC cache file holding `name` of the directory output `folder` (dvc.lock's)."""
    lock = (repo / "dvc.lock").read_text()
    dir_md5 = re.search(rf"path: {folder}\n\s+hash: md5\n\s+md5: (\w+)\.dir", lock).group(1)
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    listing = json.loads((cache / dir_md5[:2] / f"{dir_md5[2:]}.dir").read_text())
    md5 = next(e["md5"] for e in listing if e["relpath"] == name)
    return cache / md5[:2] / md5[2:]


def damage(path: Path, keep_mtime: bool = True) -> None:
    """Overwrite bytes in the middle of `path`, keeping its size (and mtime: bit rot)."""
    info = path.stat()
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.seek(info.st_size // 2)
        fh.write(b"\x00garbage\x00")
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.mark.slow
def test_verify_names_damaged_outputs_and_its_restore_commands_work(
    dvc_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    use_tiny_dataset(dvc_repo)
    assert dvc(dvc_repo, "repro", "split").returncode == 0
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "split")
    train = dvc_repo / "artifacts" / "split" / "train.parquet"
    good = md5_file(train)
    code, out = verify(dvc_repo, monkeypatch, capsys)
    n_files = len(SPLIT_FILES) + 2  # the split's files and data/tiny's two CSVs
    assert code == 0 and f"verify    {n_files} of {n_files} tracked files match" in out, out

    # 1. bytes damaged in place, size and mtime kept: DVC's own status does not see it
    damage(train)
    assert "up to date" in dvc(dvc_repo, "status", "split").stdout
    code, out = verify(dvc_repo, monkeypatch, capsys)
    assert code == 1
    assert "CORRUPTED: artifacts/split/train.parquet (split): md5 " in out
    restore = "`rm artifacts/split/train.parquet && dvc checkout artifacts/split/train.parquet`"
    assert f"restore: {restore} (the cache copy is intact)" in out
    subprocess.run(restore.strip("`"), shell=True, cwd=dvc_repo, check=True, capture_output=True)
    assert md5_file(train) == good
    assert verify(dvc_repo, monkeypatch, capsys)[0] == 0

    # 2. the case: a corrupted cache object, which `dvc checkout` copies without a word
    cache = cache_object(dvc_repo, "artifacts/split", "train.parquet")
    damage(cache)
    code, out = verify(dvc_repo, monkeypatch, capsys)
    assert code == 1 and "CACHE CORRUPTED: artifacts/split/train.parquet (split)" in out
    assert "restore: `dvc commit -f split`" in out
    train.unlink()
    checkout = dvc(dvc_repo, "checkout", "artifacts/split")
    assert checkout.returncode == 0, checkout.stderr  # no complaint ...
    assert md5_file(train) != good  # ... and the bad bytes are in the workspace
    code, out = verify(dvc_repo, monkeypatch, capsys)
    assert code == 1
    cache_rel = cache.relative_to(dvc_repo)
    assert (
        f"restore: its cache copy {cache_rel} is corrupted too: "
        f"`rm -f artifacts/split/train.parquet {cache_rel}`, then "
        "`dvc pull artifacts/split/train.parquet` (from the remote) or `dvc repro -f split`"
    ) in out, out
    # no remote here: rebuild, as the message says; the split is deterministic
    os.chmod(cache, 0o644)
    cache.unlink()
    train.unlink()
    assert dvc(dvc_repo, "repro", "-f", "split").returncode == 0
    assert md5_file(train) == good and md5_file(cache) == good  # nothing lost
    assert verify(dvc_repo, monkeypatch, capsys)[0] == 0
