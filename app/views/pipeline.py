"""Pipeline: days processed, records, coverage, stale stages, last runs, what to run next."""

import streamlit as st

from app import data
from app.ui import clear_cache, fmt_int, load, missing

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
