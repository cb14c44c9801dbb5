"""The dashboard's controls against a real Prefect server (prefect_test_harness): a click
creates a flow run of the button's deployment, and the sidebar shows its state and link."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app.orchestrator import DEPLOYMENTS
from tests.conftest import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app" / "streamlit_app.py")


@pytest.fixture(scope="module")
def prefect_server():
    """A temporary Prefect server with a deployment registered under each control's name."""
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from the server
        with prefect_test_harness(server_startup_timeout=60):
            yield register_deployments(flow)


def register_deployments(flow) -> dict:
    """Register a trivial flow under each control's "<flow>/<deployment>" name; name -> id."""
    ids = {}
    for deployment in DEPLOYMENTS.values():
        flow_name, deployment_name = deployment.split("/")

        @flow(name=flow_name)
        def trivial() -> None:
            """Stands in for the real flow: this test only checks the run is created."""

        ids[deployment] = trivial.to_deployment(name=deployment_name).apply()
    return ids


def flow_runs_of(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.ID_DESC,  # the sync client sends None unless told (422)
            limit=50,
        )


@pytest.mark.slow
@pytest.mark.parametrize("label", list(DEPLOYMENTS))
def test_click_creates_a_flow_run_of_the_deployment(prefect_server, monkeypatch, tmp_path, label):
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("RECSYS_ROOT", str(tmp_path))
    deployment = DEPLOYMENTS[label]
    before = {run.id for run in flow_runs_of(prefect_server[deployment])}
    app = AppTest.from_file(APP, default_timeout=60).run()
    button = next(b for b in app.sidebar.button if b.label == label)
    assert not button.disabled
    button.click().run()
    assert not app.exception and not app.sidebar.error, [e.value for e in app.sidebar.error]
    created = [run for run in flow_runs_of(prefect_server[deployment]) if run.id not in before]
    assert len(created) == 1
    assert created[0].deployment_id == prefect_server[deployment]
    shown = " ".join(m.value for m in app.sidebar.markdown)
    base = PREFECT_API_URL.value().removesuffix("/api")
    assert f"{base}/runs/flow-run/{created[0].id}" in shown
    assert f"**{deployment}** — {created[0].state.name}" in shown
