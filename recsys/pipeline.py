"""The one way this project talks to DVC: run its commands and read the pipeline's state."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from recsys.errors import RecsysError


class StageState(BaseModel):
    """One DVC stage: its outputs, whether they all exist, and what DVC says changed."""

    name: str
    outs: list[str]
    built: bool
    stale: bool
    changes: list[str]


def dvc_env() -> dict[str, str]:
    """The environment DVC commands run with: analytics off, and this interpreter's folder
    first on PATH, so that the stages' `python -m …` run where recsys is installed."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": path}


def run_dvc(
    *args: str,
    cwd: str | Path = ".",
    check: bool = True,
    echo: Callable[[str], None] | None = None,
) -> str:
    """Run `dvc ARGS` with this interpreter's DVC; return stdout, or raise with DVC's reason.

    `echo` receives each stdout line as DVC prints it (progress of long commands).
    """
    cmd = [sys.executable, "-m", "dvc", *args]
    if echo is None:
        proc = subprocess.run(cmd, cwd=cwd, env=dvc_env(), capture_output=True, text=True)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        code, out, err = _run_echoing(cmd, cwd, echo)
    if check and code != 0:
        lines = [ln for ln in (err or out).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {code}"
        raise RecsysError(f"`dvc {' '.join(args)}` failed: {reason}")
    return out


def _run_echoing(
    cmd: list[str], cwd: str | Path, echo: Callable[[str], None]
) -> tuple[int, str, str]:
    """Run `cmd`, passing each stdout line to `echo` as it comes; (exit code, stdout, stderr)."""
    with tempfile.TemporaryFile(mode="w+") as err_file:
        with subprocess.Popen(
            cmd, cwd=cwd, env=dvc_env(), stdout=subprocess.PIPE, stderr=err_file, text=True
        ) as proc:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                echo(line.rstrip("\n"))
            code = proc.wait()
        err_file.seek(0)
        return code, "".join(lines), err_file.read()


def _describe(change: dict | str) -> list[str]:
    """Flatten a `dvc status` entry into lines like 'changed deps: params.yaml: a.b modified'."""
    if isinstance(change, str):
        return [change]
    lines = []
    for kind, paths in change.items():
        for path, how in paths.items():
            if isinstance(how, dict):  # params: {key: state}
                lines.extend(f"{kind}: {path}: {key} {state}" for key, state in how.items())
            else:
                lines.append(f"{kind}: {path} {how}")
    return lines


def stage_states(root: str | Path = ".", wait_for_lock: bool = False) -> list[StageState]:
    """Every stage of the repo's pipeline with its build and staleness state.

    DVC's repository lock is held while it reads; `wait_for_lock` waits for another DVC
    process to finish (like `dvc --wait-for-lock`) instead of failing after ~3 s.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root), _wait_for_lock=wait_for_lock) as repo:
            status = repo.status()
            stages = list(repo.index.stages)
            return [
                _state(stage, status.get(stage.addressing, []), repo.root_dir) for stage in stages
            ]
    except DvcException as err:
        reason = str(err).splitlines()[0]
        if "is busy" in reason:
            reason += " (another DVC command is running: wait for it, then try again)"
        raise RecsysError(f"DVC could not read the pipeline in {root}: {reason}") from None


def _name(stage, root_dir: str) -> str:
    """The stage as addressed from the repo root (`split`, `batch@3`, `data.dvc`), any cwd."""
    path = os.path.relpath(stage.path, root_dir)  # DVC's `addressing` is relative to the cwd
    name = getattr(stage, "name", None)  # None for a .dvc file's stage
    if not name:
        return path
    return name if path == "dvc.yaml" else f"{path}:{name}"


def _state(stage, changes: list, root_dir: str) -> StageState:
    outs = [str(out.def_path) for out in stage.outs]
    described = [line for change in changes for line in _describe(change)]
    built = all(out.exists for out in stage.outs)
    name = _name(stage, root_dir)
    return StageState(name=name, outs=outs, built=built, stale=bool(changes), changes=described)
