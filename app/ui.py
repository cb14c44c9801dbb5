"""Streamlit helpers shared by the pages: cached loading, "what to run" boxes, the controls.

Guards: the app serves nothing unless Streamlit is bound to loopback (`served_on_loopback`),
and the sidebar's controls (which make Prefect workers run `dvc repro`) are off unless the
app was started with RECSYS_CONTROLS=1; when on, every start asks for confirmation first.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import data, orchestrator

LOOPBACK = ("127.0.0.1", "localhost", "::1")
RESTART_ON_LOOPBACK = "streamlit run app/streamlit_app.py --server.address 127.0.0.1"
CONTROLS_ENV = "RECSYS_CONTROLS"  # "1": the sidebar's buttons may start flow runs


@st.cache_data(show_spinner=False, max_entries=256)
def _cached(name: str, root: str, key: str, *args):
    """data.<name>(root, *args), cached until dvc.lock or metrics/ change (`key`)."""
    return getattr(data, name)(Path(root), *args)


def load(name: str, *args):
    """Call loader `name` of app.data on the project root, through the cache."""
    root = data.project_root()
    return _cached(name, str(root), data.cache_key(root), *args)


def clear_cache() -> None:
    """Forget every cached result (after a transient failure that must not stick)."""
    _cached.clear()


def missing(what: str, command: str) -> None:
    """Say what is not built yet and the command that builds it (instead of a traceback)."""
    st.info(f"{what} Run this in the project folder:", icon=":material/terminal:")
    st.code(command, language="bash")


def fmt_int(value: int | None) -> str:
    """12,345 or a dash."""
    return f"{value:,}" if value is not None else "–"


def served_on_loopback() -> bool:
    """Whether Streamlit listens on loopback only (server.address; unset = every interface).

    Streamlit reads .streamlit/config.toml only from the folder it was started in, so started
    anywhere else without `--server.address` it listens on every interface."""
    return st.get_option("server.address") in LOOPBACK


def refuse_unless_loopback() -> None:
    """Stop the page, saying how to restart, when the app is reachable from other machines."""
    if served_on_loopback():
        return
    address = st.get_option("server.address") or "every interface"
    st.error(
        f"This dashboard is listening on {address}, so other machines could reach it and its "
        "controls. It shows nothing until restarted on loopback (`make app` does that):",
        icon=":material/lock:",
    )
    st.code(RESTART_ON_LOOPBACK, language="bash")
    st.stop()


def controls_enabled() -> bool:
    """The controls are on only when the app was started with RECSYS_CONTROLS=1."""
    return os.environ.get(CONTROLS_ENV, "") == "1"


def controls() -> None:
    """Sidebar buttons that start Prefect deployments (off unless enabled; each start asks
    for confirmation), and the state of the runs started."""
    with st.sidebar:
        st.subheader("Controls")
        enabled = controls_enabled()
        api = orchestrator.api_url()
        if not enabled:
            st.caption(f"Off: they make the Prefect workers run the pipeline. Start the app with "
                       f"`{CONTROLS_ENV}=1` to turn them on.")  # fmt: skip
        elif api is None:
            st.caption("No Prefect server configured (PREFECT_API_URL). Start one with:")
            st.code(orchestrator.START_SERVER, language="bash")
        for label, deployment in orchestrator.DEPLOYMENTS.items():
            clicked = st.button(label, key=f"control-{deployment}",
                                disabled=not enabled or api is None,
                                help=f"starts the Prefect deployment {deployment}, after you "
                                "confirm", width="stretch")  # fmt: skip
            if clicked:
                st.session_state["confirming"] = label
        if enabled and api is not None and st.session_state.get("confirming"):
            _confirm(st.session_state["confirming"])
        if error := st.session_state.pop("start_error", None):
            st.error(error)
        _show_runs()


def _confirm(label: str) -> None:
    """Ask before starting `label`'s deployment: Start runs it, Cancel forgets the click."""
    deployment = orchestrator.DEPLOYMENTS[label]
    st.warning(f"{label}: start a flow run of {deployment}? It runs `dvc repro` in the "
               "project its worker serves.")  # fmt: skip
    start, cancel = st.columns(2)
    start.button("Start", key="confirm-start", type="primary", on_click=_start, args=(deployment,))
    cancel.button("Cancel", key="confirm-cancel", on_click=_cancel)


def _start(deployment: str) -> None:
    """Start's callback (it runs before the page is drawn): start, or keep the error to show."""
    st.session_state["confirming"] = None
    try:
        run = orchestrator.start(deployment)
    except Exception as err:  # the API is down or the deployment is missing: say so in one line
        st.session_state["start_error"] = (
            f"Could not start {deployment}: {type(err).__name__}: {err}"
        )
        return
    st.session_state.setdefault("started_runs", []).insert(0, run)


def _cancel() -> None:
    st.session_state["confirming"] = None


def _show_runs() -> None:
    runs = st.session_state.get("started_runs", [])
    if not runs:
        return
    st.caption("Runs started from here")
    try:
        states = orchestrator.states_of([run.flow_run_id for run in runs[:5]])
    except orchestrator.OrchestratorError as err:  # the server went away: the last known states
        st.warning(f"{err}; the states shown are the last known ones")
        states = {}
    for run in runs[:5]:
        state = states.get(run.flow_run_id, run.state)
        st.markdown(f"**{run.deployment}** — {state}  \n[{run.name}]({run.url})")
    st.button("Refresh states", key="refresh-runs")
