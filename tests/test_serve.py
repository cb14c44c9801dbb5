"""A real `prefect server start` + `python -m flows.serve`: the cron deployment completes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from flows.serve import DAILY_CRON, DAILY_TIMEZONE
from tests.conftest import PROJECT_ROOT
from tests.test_flows import prepare_tiny_repo

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, method: str = "GET") -> dict | None:
    """The API's JSON answer, or None while it is not up / the object does not exist."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return json.loads(r.read())
    except OSError:  # connection refused, 404 (HTTPError is an OSError)
        return None


def wait_for(check, seconds: float, what: str):
    """Poll `check()` every second until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what} not ready after {seconds} s")


@contextmanager
def background(cmd: list[str], log: Path, **kwargs):
    """Run `cmd` in its own process group; always stop the group (SIGINT, then SIGKILL)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_served_daily_deployment_has_its_cron_and_completes(dvc_repo: Path, tmp_path: Path):
    prepare_tiny_repo(dvc_repo)  # 2 daily batches
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    server = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    serve = [sys.executable, "-m", "flows.serve", "--repo", str(dvc_repo)]
    with background(server, tmp_path / "server.log", env=env):
        wait_for(lambda: get_json(f"{api}/health"), 60, "prefect server")
        with background(serve, tmp_path / "serve.log", env=env, cwd=PROJECT_ROOT):
            daily = wait_for(
                lambda: get_json(f"{api}/deployments/name/daily-etl/daily"), 45, "daily-etl/daily"
            )
            schedule = daily["schedules"][0]["schedule"]
            assert (schedule["cron"], schedule["timezone"]) == (DAILY_CRON, DAILY_TIMEZONE)
            assert (DAILY_CRON, DAILY_TIMEZONE) == ("0 2 * * *", "UTC")
            run = subprocess.run(
                [sys.executable, "-m", "prefect", "deployment", "run", "daily-etl/daily",
                 "--watch", "--watch-timeout", "90"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Completed" in run.stdout
    assert (dvc_repo / "batches/day_01.parquet").is_file()
    assert not (dvc_repo / "batches/day_02.parquet").exists()
