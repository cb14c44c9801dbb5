"""Data quality: the four dimensions per day against the threshold, quarantine, alerts."""

import altair as alt
import streamlit as st

from app.data import QUALITY_METRICS
from app.ui import load, missing

st.title("Data quality")
quality = load("quality_frame")
if quality is None:
    missing("No day has been processed yet.", "recsys etl --next   # or: dvc repro batch@1")
    st.stop()

threshold = float(quality["min_quality"].iloc[-1])
for _, day in quality[~quality["passed"]].iterrows():
    st.error(f"Day {day['day']} is under the quality threshold: {day['failed_checks']}")
if quality["passed"].all():
    st.success(f"All {len(quality)} days processed pass every check (threshold {threshold}).")

long = quality.melt(id_vars="day", value_vars=list(QUALITY_METRICS), var_name="dimension",
                    value_name="score")  # fmt: skip
low = min(threshold, float(long["score"].min())) - 0.01
y = alt.Y("score:Q", scale=alt.Scale(domain=[low, 1.0]), title="share of rows passing")
base = alt.Chart().encode(x=alt.X("day:O", title="day"), y=y)
below = alt.datum.score < threshold
points = base.mark_point(filled=True, size=40).encode(
    color=alt.condition(below, alt.value("#d62728"), alt.value("#1f77b4")),
    tooltip=["day", "dimension", alt.Tooltip("score:Q", format=".4f")],
)
rule = alt.Chart().mark_rule(color="#d62728", strokeDash=[6, 3]).encode(y=alt.datum(threshold))
chart = alt.layer(base.mark_line(color="#1f77b4"), points, rule, data=long)
chart = chart.properties(width=170, height=150).facet(
    facet=alt.Facet("dimension:N", sort=list(QUALITY_METRICS), title=None), columns=4
)
st.altair_chart(chart)
st.caption(f"Red dashed line: the threshold etl.min_quality = {threshold}; red points: under it.")
st.dataframe(quality, hide_index=True, width="stretch")

st.subheader("Quarantined rows")
rows = load("quarantine_frame")
if rows is None or rows.empty:
    st.success("No row has been quarantined.")
else:
    counts = rows.groupby(["day", "reason"]).size().rename("rows").reset_index()
    st.dataframe(counts, hide_index=True)
    reason = st.selectbox("Show rows for reason", ["all", *sorted(rows["reason"].unique())])
    shown = rows if reason == "all" else rows[rows["reason"] == reason]
    st.dataframe(shown, hide_index=True, width="stretch")
