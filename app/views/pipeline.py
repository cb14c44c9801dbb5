"""Pipeline: days processed, records, coverage, stale stages, last runs, what to run next,
and on request a verification of every DVC-tracked output against its recorded md5."""

import streamlit as st

from app import data
from app.ui import clear_cache, fmt_int, load, missing
from recsys.errors import RecsysError
from recsys.status import render_verified, verify_outputs


def verify_section() -> None:
    """`recsys status --verify` on request: damaged files, each with its restore commands."""
    st.subheader("Verify outputs")
    st.caption("Reads every DVC-tracked output and its cache copy and compares md5s with "
               "dvc.lock and the .dvc files (`recsys status --verify`): finds bytes damaged "
               "in place, which `dvc status` trusts by size and mtime.")  # fmt: skip
    if not st.button("Verify outputs", key="verify-outputs"):
        return
    try:
        with st.spinner("Reading every tracked file…"):
            checks = verify_outputs(data.project_root())
    except RecsysError as err:
        st.warning(str(err))
        return
    summary = render_verified(checks)[0].removeprefix("verify").strip()
    bad = [c for c in checks if c.damaged]
    if not bad:
        st.success(summary)
        return
    st.error(summary)
    for check in bad:
        st.error(f"**{check.state}**: `{check.path}` ({check.stage}): {check.detail}  \n"
                 f"Restore: {check.restore}")  # fmt: skip


st.title("Pipeline")
status = load("pipeline_status")
if status is None:
    missing("This folder is not a DVC project (no dvc.yaml and .dvc/).",
            "git clone <the project> && cd <it> && make demo")  # fmt: skip
    st.stop()
if isinstance(status, str):
    st.warning(f"DVC could not report the pipeline's state just now: {status}")
    clear_cache()  # not cached: the next run asks DVC again
    st.button("Try again")
    st.stop()

etl = status.etl
done, total = (etl.days_done, etl.n_days) if etl else (0, 0)
st.progress(done / total if total else 0.0, text=f"Days processed: {done}/{total}")
cols = st.columns(4)
cols[0].metric("Days processed", f"{done}/{total}")
cols[1].metric("Records processed", fmt_int(etl.records_processed if etl else None))
cols[2].metric("Quarantined", fmt_int(etl.records_quarantined if etl else None))
coverage = etl.coverage_pct if etl else None
cols[3].metric("Coverage of test split", f"{coverage:.1f} %" if coverage is not None else "–")
if etl and etl.last_quality and not etl.last_quality["passed"]:
    checks = "; ".join(etl.last_quality["failed_checks"])
    st.error(f"Day {etl.last_day} failed the quality gate ({checks}): see Data quality.")

st.subheader("What to run next")
st.code(data.next_command(status), language="bash")

st.subheader("Stages")
stages = data.stage_table(status)
stale = stages[stages["stale"] | ~stages["built"]]
if stale.empty:
    st.success(f"All {len(stages)} stages are built and up to date.")
else:
    st.warning(f"{len(stale)} of {len(stages)} stages are stale or not built.")
    st.dataframe(stale, hide_index=True, width="stretch")

st.subheader("Last runs")
st.dataframe(load("last_runs"), hide_index=True, width="stretch")

verify_section()
