"""`recsys bench demo`: the wall time of every `dvc repro` stage on a fresh clone.

The clone is of the repository's committed HEAD (uncommitted changes are not measured), with
the workspace's `data/` copied in (what `recsys fetch` wrote; its bytes are pinned by
data.dvc), into a temporary folder that is removed afterwards unless `--keep DIR` names one.
A stage's time runs from DVC's "Running stage" line to the next one (or DVC's exit), so it
includes DVC's own hashing and bookkeeping for that stage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from recsys.errors import RecsysError
from recsys.pipeline import run_dvc

STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


class StageClock:
    """Turns DVC's streamed output into per-stage wall times."""

    def __init__(self, echo: bool):
        self.began, self.echo = time.perf_counter(), echo
        self.current: tuple[str, float] | None = None
        self.seconds: dict[str, float] = {}

    def line(self, text: str) -> None:
        if self.echo:
            print(text, flush=True)
        match = STAGE_LINE.match(text)
        if match:
            now = time.perf_counter()
            self.stop(now)
            self.current = (match.group(1), now)

    def stop(self, now: float | None = None) -> None:
        """End the running stage (at `now`, default: the clock's time)."""
        if self.current is not None:
            name, started = self.current
            now = time.perf_counter() if now is None else now
            self.seconds[name] = round(now - started, 2)
            self.current = None


def fresh_clone(source: Path, dest: Path) -> None:
    """`git clone` of source's HEAD at dest, with source's data/ copied in."""
    proc = subprocess.run(
        ["git", "clone", "-q", str(source), str(dest)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RecsysError(f"{source}: git clone failed: {proc.stderr.strip().splitlines()[-1]}")
    if not (source / "data").is_dir():
        raise RecsysError(f"{source / 'data'}: no data to run on; run `recsys fetch` first")
    shutil.copytree(source / "data", dest / "data")


def bench_demo(source: Path, keep: Path | None = None, echo: bool = False) -> dict:
    """Run `dvc repro` on a fresh clone of `source`; the wall time of each stage and in all."""
    with tempfile.TemporaryDirectory(prefix="recsys-demo-") as tmp:
        work = keep if keep is not None else Path(tmp) / "repo"
        fresh_clone(source.resolve(), work)
        clock = StageClock(echo)
        run_dvc("repro", cwd=work, echo=clock.line)
        clock.stop()
        total = time.perf_counter() - clock.began
    groups: dict[str, float] = {}
    for name, seconds in clock.seconds.items():
        groups[stage_group(name)] = round(groups.get(stage_group(name), 0.0) + seconds, 2)
    return {"total_s": round(total, 1), "stages": clock.seconds, "by_stage": groups}


def stage_group(name: str) -> str:
    """The per-day stages as one group (`batch@3` -> `batch@*`); other names as they are."""
    base, _, item = name.partition("@")
    return f"{base}@*" if item.isdigit() else name
