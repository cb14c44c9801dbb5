"""The dashboard's controls ask Prefect to run a deployment; no pipeline work runs in the app.

A button is live only when a Prefect API is configured (PREFECT_API_URL, from the environment
or the active Prefect profile); otherwise the page shows the command that starts a server.
"""

from __future__ import annotations

from dataclasses import dataclass

# button label -> deployment "<flow name>/<deployment name>" (flows/serve.py)
DEPLOYMENTS = {
    "Process next day": "daily-etl/daily",
    "Run A/B test": "ab-test/on-demand",
    "Retrain": "training/on-demand",
}
START_SERVER = (
    "prefect server start   # then, in another shell:\n"
    "export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
    "python -m flows.serve  # serves the deployments; restart the app with that variable set"
)


@dataclass(frozen=True)
class StartedRun:
    """A flow run the app asked Prefect for."""

    deployment: str
    flow_run_id: str
    name: str
    state: str
    url: str


def api_url() -> str | None:
    """The configured Prefect API URL, or None when no server is configured."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def run_url(flow_run_id: str) -> str:
    """Link to a flow run in the Prefect UI (PREFECT_UI_URL, else the API URL minus /api)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or (api_url() or "").removesuffix("/").removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"


def start(deployment: str) -> StartedRun:
    """Create a flow run of `deployment` and return at once (timeout=0: no waiting)."""
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, timeout=0)
    state = run.state.name if run.state else "Scheduled"
    return StartedRun(deployment, str(run.id), run.name, state, run_url(str(run.id)))


def state_of(flow_run_id: str) -> str:
    """The flow run's current state name, as the Prefect API reports it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return run.state.name if run.state else "unknown"
