"""The dashboard's controls ask Prefect to run a deployment; no pipeline work runs in the app.

A button is live only when a Prefect API is configured (PREFECT_API_URL, from the environment
or the active Prefect profile); otherwise the page shows the command that starts a server.
Every call to the API gives up after API_TIMEOUT_S (no retries) with an OrchestratorError
that names the server: a server that accepts connections and never answers cannot hang the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from recsys.errors import RecsysError

T = TypeVar("T")
API_TIMEOUT_S = 10.0  # one control or state lookup, all its requests together

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


class OrchestratorError(RecsysError):
    """The Prefect API did not answer in time, or refused the request."""


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


def _within_deadline(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run the async API `call` to completion in at most API_TIMEOUT_S, without retries;
    raise OrchestratorError naming the server and `what` on a timeout or a refused connection."""
    import httpx
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    async def bounded() -> T:
        return await asyncio.wait_for(call(), API_TIMEOUT_S)

    settings = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: API_TIMEOUT_S}
    try:
        with temporary_settings(settings):
            return asyncio.run(bounded())
    except TimeoutError:
        raise OrchestratorError(
            f"the Prefect API at {api_url()} did not answer within {API_TIMEOUT_S:g} s ({what});"
            " check that `prefect server start` is running and reachable"
        ) from None
    except httpx.HTTPError as err:  # refused, reset, DNS: the server is not there
        raise OrchestratorError(
            f"could not reach the Prefect API at {api_url()} ({what}): {err or type(err).__name__}"
        ) from None


def start(deployment: str) -> StartedRun:
    """Create a flow run of `deployment` and return at once (timeout=0: no waiting)."""
    from prefect.deployments import arun_deployment

    run = _within_deadline(f"start {deployment}", lambda: arun_deployment(deployment, timeout=0))
    state = run.state.name if run.state else "Scheduled"
    return StartedRun(deployment, str(run.id), run.name, state, run_url(str(run.id)))


def states_of(flow_run_ids: list[str]) -> dict[str, str]:
    """Each flow run's current state name, in one API call (one deadline for them all)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        wanted = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids]))
        async with get_client() as client:
            return await client.read_flow_runs(flow_run_filter=wanted)

    runs = _within_deadline(f"states of {len(flow_run_ids)} flow runs", read)
    return {str(run.id): run.state.name if run.state else "unknown" for run in runs}
