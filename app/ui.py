"""Streamlit helpers shared by the pages: cached loading, "what to run" boxes, the controls."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import data, orchestrator


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


def controls() -> None:
    """Sidebar buttons that start Prefect deployments, and the state of the runs started."""
    with st.sidebar:
        st.subheader("Controls")
        api = orchestrator.api_url()
        if api is None:
            st.caption("No Prefect server configured (PREFECT_API_URL). Start one with:")
            st.code(orchestrator.START_SERVER, language="bash")
        for label, deployment in orchestrator.DEPLOYMENTS.items():
            clicked = st.button(label, key=f"control-{deployment}", disabled=api is None,
                                help=f"starts the Prefect deployment {deployment}",
                                width="stretch")  # fmt: skip
            if clicked:
                _start(deployment)
        _show_runs()


def _start(deployment: str) -> None:
    try:
        run = orchestrator.start(deployment)
    except Exception as err:  # the API is down or the deployment is missing: say so in one line
        st.error(f"Could not start {deployment}: {type(err).__name__}: {err}")
        return
    st.session_state.setdefault("started_runs", []).insert(0, run)


def _show_runs() -> None:
    runs = st.session_state.get("started_runs", [])
    if not runs:
        return
    st.caption("Runs started from here")
    for run in runs[:5]:
        try:
            state = orchestrator.state_of(run.flow_run_id)
        except Exception:  # the server went away: show the last state known
            state = run.state
        st.markdown(f"**{run.deployment}** — {state}  \n[{run.name}]({run.url})")
    st.button("Refresh states", key="refresh-runs")
