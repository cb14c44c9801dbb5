"""Faults injected into the flows and the app's Prefect client: a repository lock held by
another writer, DVC's own lock held by another DVC process, a stage that hangs, and a Prefect
API that accepts connections and never answers. Each time the system fails in bounded time with
a message that names the cause, loses nothing, and works again once the fault is gone.
"""

from __future__ import annotations

import contextvars
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from app import orchestrator
from flows.ab_test import ab_test
from flows.daily_etl import daily_etl
from recsys.pipeline import DvcTimedOut, RepoBusy, repo_lock
from tests.conftest import dvc, git
from tests.test_flows import run_log, served_repos, task_runs  # noqa: F401 (a fixture)
from tests.test_flows import tiny_repo as tiny_repo  # a fixture
from tests.test_pipeline import recsys_cli

pytestmark = pytest.mark.slow
uses_prefect = pytest.mark.usefixtures("prefect_api")

HOLD_LOCK = """
import sys
from recsys.pipeline import repo_lock
with repo_lock(sys.argv[1], sys.argv[2], timeout_s=0):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def set_flows_params(repo: Path, **values) -> None:
    """Change the repo's `flows` limits and commit."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["flows"].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "commit", "-qam", f"flows limits {values}")


def logs_mention(text: str) -> bool:
    """Whether any log line the Prefect API holds contains `text`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(limit=200, sort=LogSort.TIMESTAMP_DESC)
    return any(text in log.message for log in logs)


@uses_prefect
def test_busy_locks_fail_in_time_naming_the_holder_or_are_retried(tiny_repo: Path):
    set_flows_params(tiny_repo, lock_timeout_s=1)
    before = git(tiny_repo, "rev-parse", "HEAD")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tiny_repo), "drill: a manual dvc repro"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        state = daily_etl(repo=str(tiny_repo), return_state=True)
        assert state.is_failed()
        held_by = rf"drill: a manual dvc repro \(pid {holder.pid} on .+, since .+ UTC\)"
        with pytest.raises(RepoBusy, match=held_by + r" holds its lock; waited 1 s"):
            state.result()
        assert "waiting up to 1 s for drill: a manual dvc repro" in run_log(state)
        etl = recsys_cli(tiny_repo, "etl", "--next")  # the CLI takes the same lock
        assert etl.returncode == 1 and f"pid {holder.pid}" in etl.stderr, etl.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert not (tiny_repo / "batches/day_01.parquet").exists()  # nothing ran, nothing lost
    assert git(tiny_repo, "status", "--porcelain") == ""
    assert git(tiny_repo, "rev-parse", "HEAD") == before

    # DVC's own rwlock: another DVC process reads what batch@1 writes ("… is busy")
    blocker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    reader = {"pid": blocker.pid, "cmd": "dvc drill"}
    rwlock = {"read": {str(tiny_repo / "batches/day_01.parquet"): [reader]}, "write": {}}
    (tiny_repo / ".dvc/tmp/rwlock").write_text(json.dumps(rwlock))
    busy = f"(PID {blocker.pid}): dvc drill"

    def end_blocker_once_refused() -> None:  # the other DVC process finishes after attempt 1
        deadline = time.monotonic() + 60
        while not logs_mention(busy) and time.monotonic() < deadline:
            time.sleep(0.5)
        blocker.kill()
        blocker.wait()

    context = contextvars.copy_context()  # the test's Prefect API settings, in the thread
    watcher = threading.Thread(target=context.run, args=[end_blocker_once_refused])
    watcher.start()
    try:
        state = daily_etl(repo=str(tiny_repo), return_state=True)
    finally:
        watcher.join(timeout=70)
        blocker.kill()
    assert state.is_completed() and state.result()["day"] == 1
    assert task_runs(state)["dvc repro batch@1"].run_count == 2  # refused once, then retried
    log = run_log(state)  # DVC's whole message, not only its last line
    assert "is busy, it is being blocked by:" in log and busy in log
    assert (tiny_repo / "batches/day_01.parquet").is_file()


@uses_prefect
def test_a_hung_stage_is_stopped_at_its_timeout_and_the_repo_stays_usable(dvc_repo: Path):
    hang = (
        "python -c \"import os, time; open('stage.pid', 'w').write(str(os.getpid())); "
        'time.sleep(300)"'
    )
    (dvc_repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"report": {"cmd": hang}}}))
    git(dvc_repo, "add", "dvc.yaml")
    set_flows_params(dvc_repo, stage_timeout_s=3)
    started = time.monotonic()
    state = ab_test(repo=str(dvc_repo), return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    with pytest.raises(
        DvcTimedOut,
        match=r"^`dvc --wait-for-lock repro report` ran past its limit of 3 s and was stopped",
    ):
        state.result()
    assert task_runs(state)["dvc repro report"].run_count == 1  # it would only hang again
    assert elapsed < 3 + 10, elapsed  # the limit, and the flow's own work
    pid = int((dvc_repo / "stage.pid").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with repo_lock(dvc_repo, "the next writer", timeout_s=0):  # the flow let go of it
        status = dvc(dvc_repo, "status")
    assert status.returncode == 0 and "report" in status.stdout, status.stderr


def test_a_hung_prefect_api_gives_the_app_a_clear_error_in_time(monkeypatch: pytest.MonkeyPatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert orchestrator.API_TIMEOUT_S <= 10  # the app's promise
    monkeypatch.setattr(orchestrator, "API_TIMEOUT_S", 1.0)  # the same path, a shorter wait
    with socket.socket() as hung:  # accepts connections (the kernel does), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/api"
        with temporary_settings({PREFECT_API_URL: url}):
            for call, arg in ((orchestrator.start, "daily-etl/daily"), (orchestrator.states_of,
                              ["9f5c4bde-0000-4000-8000-000000000001"])):  # fmt: skip
                started = time.monotonic()
                with pytest.raises(orchestrator.OrchestratorError) as err:
                    call(arg)
                assert time.monotonic() - started < 1.0 + 2.0  # bounded: no retries
                assert str(err.value).startswith(f"the Prefect API at {url} did not answer")
                assert "`prefect server start`" in str(err.value)
        hung.settimeout(0)
        assert hung.accept()  # the client really connected and waited
