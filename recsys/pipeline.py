"""The one way this project talks to DVC: run its commands and read the pipeline's state.

Also the repository's one-writer lock (`repo_lock`): every flow that runs DVC and `recsys etl`
take it, so two of them never run `dvc repro` in the same clone at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from recsys.errors import RecsysError

REPO_LOCK = Path(".dvc/tmp/recsys-repo.lock")  # under the repository root
REASON_CHARS = 300  # DVC's reason in a one-line error; the whole output stays on the error
STOP_GRACE_S = 10  # after SIGTERM, DVC and its stage get this long before SIGKILL


class StageState(BaseModel):
    """One DVC stage: its outputs, whether they all exist, and what DVC says changed."""

    name: str
    outs: list[str]
    built: bool
    stale: bool
    changes: list[str]


class DvcFailed(RecsysError):
    """A DVC command exited non-zero: the message has DVC's reason, `output` all it printed."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


class DvcTimedOut(RecsysError):
    """A DVC command ran past its time limit and was stopped (with its stage's processes)."""


class RepoBusy(RecsysError):
    """The repository lock stayed held by another writer for the whole wait."""


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
    timeout_s: float | None = None,
) -> str:
    """Run `dvc ARGS` with this interpreter's DVC; return its output, or raise with DVC's reason.

    `echo` receives each line DVC (and the stage it runs) prints, stdout and stderr merged, as
    it comes. After `timeout_s` seconds, or when this call is interrupted (Ctrl-C, a Prefect
    task timeout), DVC and every process it started are stopped.
    A failure raises DvcFailed: its message is one line, its `output` everything DVC printed.
    """
    cmd = [sys.executable, "-m", "dvc", *args]
    stderr = subprocess.STDOUT if echo else subprocess.PIPE
    with subprocess.Popen(
        cmd, cwd=cwd, env=dvc_env(), stdout=subprocess.PIPE, stderr=stderr, text=True,
        start_new_session=True,  # its own process group: stopping it stops the stage too
    ) as proc:  # fmt: skip
        timed_out = threading.Event()

        def stop_on_time() -> None:
            timed_out.set()
            _stop(proc)

        timer = threading.Timer(timeout_s, stop_on_time) if timeout_s else None
        try:
            if timer:
                timer.start()
            if echo is None:
                out, err = proc.communicate()
            else:
                lines = []
                for line in proc.stdout:
                    lines.append(line)
                    echo(line.rstrip("\n"))
                out, err = "".join(lines), ""
            code = proc.wait()
        except BaseException:  # interrupted: never leave DVC running behind us
            _stop(proc)
            raise
        finally:
            if timer:
                timer.cancel()
    command = f"`dvc {' '.join(args)}`"
    if timed_out.is_set():
        raise DvcTimedOut(
            f"{command} ran past its limit of {timeout_s:g} s and was stopped (the limits are "
            "params.yaml's `flows` section: raise the one for this step if it needs longer)"
        )
    if check and code != 0:
        raise DvcFailed(f"{command} failed: {_reason(err or out, code)}", out + (err or ""))
    return out


def _reason(text: str, code: int) -> str:
    """DVC's last `ERROR:` message (with the lines after it) on one line, capped."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("ERROR")]
    reason = " ".join(lines[starts[-1] :] if starts else lines[-1:]) or f"exit code {code}"
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM DVC's process group; SIGKILL it if it is still there after STOP_GRACE_S."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def lock_timeout(root: str | Path) -> int:
    """Seconds to wait for a lock in `root`: its params.yaml's `flows.lock_timeout_s`."""
    from recsys.config import Params, load_params

    params_file = Path(root) / "params.yaml"
    params = load_params(params_file) if params_file.is_file() else Params()
    return params.flows.lock_timeout_s


def lock_holder(root: str | Path) -> str:
    """Who holds (or last held) the repository lock, as its holder wrote it."""
    try:
        info = json.loads((Path(root) / REPO_LOCK).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (it wrote no name)"
    return f"{info['holder']} (pid {info['pid']} on {info['host']}, since {info['since']})"


@contextlib.contextmanager
def repo_lock(
    root: str | Path,
    holder: str,
    timeout_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the repository's one-writer lock; wait up to `timeout_s` (default: params.yaml's
    `flows.lock_timeout_s`) for whoever holds it, then raise RepoBusy naming them.

    `holder` names this writer for whoever waits (`flow run training/eager-fox`, `recsys etl`).
    `on_wait` gets one line when the lock is held elsewhere (default: printed to stderr).
    The lock belongs to the open file: it is released when the holder exits, even if killed.
    """
    wait_s = lock_timeout(root) if timeout_s is None else timeout_s
    path = Path(root) / REPO_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:  # a+: never truncate the holder's name before we hold it
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RepoBusy(
                        f"{root}: the repository is busy: {lock_holder(root)} holds its lock; "
                        f"waited {wait_s:g} s (flows.lock_timeout_s). Wait for it to finish, "
                        "or stop it, then try again"
                    ) from None
                if not told:
                    message = f"{root}: waiting up to {wait_s:g} s for {lock_holder(root)}"
                    (on_wait or (lambda line: print(line, file=sys.stderr)))(message)
                    told = True
                time.sleep(0.2)
        since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        info = {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
        handle.truncate(0)
        handle.write(json.dumps(info))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


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
    process to finish (up to params.yaml's `flows.lock_timeout_s`) instead of failing after ~3 s.
    """
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + (lock_timeout(root) if wait_for_lock else 0)
    while True:
        try:
            with Repo(str(root)) as repo:
                status = repo.status()
                stages = list(repo.index.stages)
                return [
                    _state(stage, status.get(stage.addressing, []), repo.root_dir)
                    for stage in stages
                ]
        except LockError as err:
            if time.monotonic() < deadline:
                time.sleep(1)
                continue
            reason = _reason(f"ERROR: {err}", 1).removeprefix("ERROR: ")  # who blocks, too
            raise RecsysError(
                f"DVC could not read the pipeline in {root}: {reason} (another DVC command is "
                "running: wait for it, then try again)"
            ) from None
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
