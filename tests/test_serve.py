"""A real `prefect server start` + `python -m flows.serve`: the cron deployment completes, a run
asking for a repository it was not served for is refused, and the failure-notification
automation (configs/automations/) calls its notification block."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

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


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint that records the JSON bodies posted to it."""

    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


def notification_automation(api: str, hook_url: str, env: dict, tmp_path: Path) -> None:
    """A webhook notification block, and configs/automations/daily-etl-failed.yaml created with
    its id by `prefect automation create`, as the README says."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        block = CustomWebhookNotificationBlock(
            name="recsys-alerts",
            url=hook_url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
        block_id = block.save("recsys-alerts")
    template = (PROJECT_ROOT / "configs/automations/daily-etl-failed.yaml").read_text()
    spec = tmp_path / "daily-etl-failed.yaml"
    spec.write_text(template.replace("NOTIFICATION_BLOCK_ID", str(block_id)))
    created = subprocess.run(
        [sys.executable, "-m", "prefect", "automation", "create", "--from-file", str(spec)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Created automation 'daily-etl failed'" in created.stdout


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
    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with background(server, tmp_path / "server.log", env=env):
        wait_for(lambda: get_json(f"{api}/health"), 60, "prefect server")
        hook_url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
        notification_automation(api, hook_url, env, tmp_path)
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
            limit = get_json(f"{api}/v2/concurrency_limits/daily-etl")  # made once, by serve
            foreign = tmp_path / "foreign"
            refused = subprocess.run(
                [sys.executable, "-m", "prefect", "deployment", "run", "daily-etl/daily",
                 "-p", f"repo={foreign}", "--watch", "--watch-timeout", "60"],
                env=env, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            notified = wait_for(lambda: Hook.received, 60, "the failure notification")
    hook.shutdown()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Completed" in run.stdout
    assert (dvc_repo / "batches/day_01.parquet").is_file()
    assert not (dvc_repo / "batches/day_02.parquet").exists()
    assert (limit["name"], limit["limit"]) == ("daily-etl", 1)
    assert refused.returncode != 0 and "Failed" in refused.stdout, refused.stdout[-2000:]
    assert not foreign.exists()
    log = (tmp_path / "serve.log").read_text()
    assert f"repo '{foreign}' is not a repository these flows were served for" in log
    (message,) = notified
    assert message["subject"].startswith("daily-etl run ") and "ended Failed" in message["subject"]
    assert "is not a repository these flows were served for" in message["body"]
