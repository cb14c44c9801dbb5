"""Pipeline: days processed, records, coverage, stale stages, last runs, what to run next."""

import streamlit as st

from app import data
from app.ui import fmt_int, load

st.title("Pipeline")
summary = load("pipeline_summary")
stages = load("stage_table")
done, total = summary["days_done"], summary["n_days"]

st.progress(min(done / total, 1.0) if total else 0.0, text=f"Days processed: {done}/{total}")
cols = st.columns(4)
cols[0].metric("Days processed", f"{done}/{total}")
cols[1].metric("Records processed", fmt_int(summary["records_processed"]))
cols[2].metric("Quarantined", fmt_int(summary["records_quarantined"]))
coverage = summary["coverage_pct"]
cols[3].metric("Coverage of test split", f"{coverage:.1f} %" if coverage is not None else "–")
if summary["failed_days"]:
    st.error(f"Days that failed the quality gate: {summary['failed_days']} (see Data quality)")

st.subheader("What to run next")
st.code(data.next_command(summary, stages, data.project_root()), language="bash")

st.subheader("Stages")
if stages is None:
    st.info("No DVC project here (no dvc.yaml / .dvc): run `dvc init` and check out the project.")
else:
    stale = stages[stages["stale"] | ~stages["built"]]
    if stale.empty:
        st.success(f"All {len(stages)} stages are built and up to date.")
    else:
        st.warning(f"{len(stale)} of {len(stages)} stages are stale or not built.")
        st.dataframe(stale, hide_index=True, width="stretch")

st.subheader("Last runs")
st.dataframe(summary["last_runs"], hide_index=True, width="stretch")
