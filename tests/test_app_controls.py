"""The dashboard's controls against a real Prefect server (prefect_test_harness): with the
controls on, a click asks for confirmation and only Start creates a flow run of the button's
deployment, whose state and link the sidebar then shows. Without RECSYS_CONTROLS=1 the buttons
are off; Cancel starts nothing; the app shows nothing unless Streamlit listens on loopback,
and `make app` binds it there."""

from __future__ import annotations

import subprocess

import pytest
from streamlit import config as st_config
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
    monkeypatch.setenv("RECSYS_CONTROLS", "1")
    deployment = DEPLOYMENTS[label]
    before = {run.id for run in flow_runs_of(prefect_server[deployment])}
    app = AppTest.from_file(APP, default_timeout=60).run()
    button = next(b for b in app.sidebar.button if b.label == label)
    assert not button.disabled
    button.click().run()
    assert f"{label}: start a flow run of {deployment}?" in app.sidebar.warning[0].value
    assert {run.id for run in flow_runs_of(prefect_server[deployment])} == before  # not yet
    app.sidebar.button(key="confirm-start").click().run()
    assert not app.exception and not app.sidebar.error, [e.value for e in app.sidebar.error]
    assert not app.sidebar.warning  # the question is gone once answered
    created = [run for run in flow_runs_of(prefect_server[deployment]) if run.id not in before]
    assert len(created) == 1
    assert created[0].deployment_id == prefect_server[deployment]
    shown = " ".join(m.value for m in app.sidebar.markdown)
    base = PREFECT_API_URL.value().removesuffix("/api")
    assert f"{base}/runs/flow-run/{created[0].id}" in shown
    assert f"**{deployment}** — {created[0].state.name}" in shown


DEAD_API = "http://127.0.0.1:9/api"  # configured, never contacted unless a run is started


@pytest.fixture
def dead_api(monkeypatch: pytest.MonkeyPatch):
    """PREFECT_API_URL = DEAD_API for the app. Prefect reads its environment into a global
    settings context once per process (an earlier test's value would win), so it is rebuilt
    here from the patched environment and restored after."""
    import prefect.context

    prior = prefect.context.GLOBAL_SETTINGS_CONTEXT
    monkeypatch.setenv("PREFECT_API_URL", DEAD_API)
    prefect.context.refresh_global_settings_context()
    yield DEAD_API
    prefect.context.GLOBAL_SETTINGS_CONTEXT = prior


def sidebar_app(monkeypatch: pytest.MonkeyPatch, tmp_path, controls: str | None) -> AppTest:
    monkeypatch.setenv("RECSYS_ROOT", str(tmp_path))
    if controls is None:
        monkeypatch.delenv("RECSYS_CONTROLS", raising=False)
    else:
        monkeypatch.setenv("RECSYS_CONTROLS", controls)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    return app


@pytest.mark.parametrize("setting", [None, "0", "yes"])
def test_controls_are_off_unless_enabled(monkeypatch, tmp_path, setting, dead_api):
    app = sidebar_app(monkeypatch, tmp_path, setting)
    buttons = {b.label: b.disabled for b in app.sidebar.button}
    assert buttons == dict.fromkeys(DEPLOYMENTS, True)  # a Prefect API is set, still off
    assert "Start the app with `RECSYS_CONTROLS=1`" in app.sidebar.caption[0].value


def test_cancel_starts_nothing(monkeypatch, tmp_path, dead_api):
    app = sidebar_app(monkeypatch, tmp_path, "1")
    button = next(b for b in app.sidebar.button if b.label == "Retrain")
    assert not button.disabled
    button.click().run()
    assert "Retrain: start a flow run of training/on-demand?" in app.sidebar.warning[0].value
    app.sidebar.button(key="confirm-cancel").click().run()
    # a start against the dead API would show "Could not start ..." in the sidebar
    assert not app.sidebar.warning, [w.value for w in app.sidebar.warning]
    assert not app.sidebar.error, [e.value for e in app.sidebar.error]
    assert not app.exception
    assert "started_runs" not in app.session_state


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.168.1.5"])
def test_app_shows_nothing_unless_on_loopback(monkeypatch, tmp_path, address):
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", address)
    try:
        app = sidebar_app(monkeypatch, tmp_path, "1")
    finally:
        st_config.set_option("server.address", previous)
    assert not app.title and not app.sidebar.button  # no page, no controls
    assert f"listening on {address or 'every interface'}" in app.error[0].value
    assert [c.value for c in app.code] == [
        "streamlit run app/streamlit_app.py --server.address 127.0.0.1"
    ]


def test_make_app_binds_to_loopback():
    """Streamlit reads .streamlit/config.toml only from its working folder: `make app` passes
    the address itself."""
    # --no-print-directory: under `make test` this is a sub-make, which would print its folder
    make = ["make", "--no-print-directory", "-n", "-o", "setup", "app"]
    recipe = subprocess.run(make, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert recipe.stdout.split()[-4:] == [
        "run", "app/streamlit_app.py", "--server.address", "127.0.0.1"
    ]  # fmt: skip
