"""A/B results: the decision, effects with CIs over days, p-values, designs, SRM, projection."""

import altair as alt
import pandas as pd
import streamlit as st

from app import data
from app.ui import load, missing

st.title("A/B results")
docs = load("abtest_days")
if not docs:
    missing(
        "No A/B look has run yet (it needs the daily batches and both models' predictions).",
        "dvc repro abtest@1   # later days: dvc repro abtest@N, then: dvc repro report",
    )
    st.stop()

days = [d["day"] for d in docs]
day = st.select_slider("Look (day)", options=days, value=days[-1]) if len(days) > 1 else days[0]
doc = next(d for d in docs if d["day"] == day)
st.markdown(f"**Model A (control):** `{doc['model_a']}` — **model B:** `{doc['model_b']}`")
decision = doc["decision"]
box = st.success if decision["b_better"] and not decision["a_better"] else st.info
box(decision["sentence"], icon=":material/gavel:")
st.caption(f"Rule: {decision['rule']} (alpha = {doc['alpha']}, design: {decision['design']}).")

st.subheader("Effect B − A with its repeated 95 % CI, days 1..N")
effects = data.effects_frame(docs)
base = alt.Chart().encode(x=alt.X("day:O", title="day"))
band = base.mark_area(opacity=0.25).encode(y=alt.Y("ci_low:Q", title="B − A"), y2="ci_high:Q")
line = base.mark_line(point=True).encode(
    y="estimate:Q", tooltip=["day", "metric", "estimate", "ci_low", "ci_high", "significant"]
)
zero = alt.Chart().mark_rule(color="gray").encode(y=alt.datum(0))
chart = alt.layer(band, line, zero, data=effects).properties(width=220, height=170)
st.altair_chart(
    chart.facet(facet=alt.Facet("metric:N", title=None), columns=3).resolve_scale(y="independent")
)
st.caption("Lower is better for sq_err and abs_err; higher for hit@10, ndcg@10, rr@10.")

st.subheader(f"Tests at day {day}: paired vs user-randomised, raw and adjusted p-values")
window_names = {"cumulative": f"days 1..{day}", "day": f"day {day} alone"}
window = st.radio("Window", list(window_names), horizontal=True, format_func=window_names.get)
st.dataframe(data.pvalue_frame(doc, window), hide_index=True, width="stretch")
st.markdown("**Sequential look** (the decision uses these: valid under 20 daily looks)")
st.dataframe(data.sequential_frame(doc), hide_index=True, width="stretch")
with st.expander("Methods"):
    st.json(doc.get("methods", {}))

st.subheader("Sample-ratio mismatch (user-randomised design)")
srm = data.srm_frame(doc)
if srm["alarm"].any():
    st.error("SRM alarm: the assignment of users to arms is broken; do not trust this look.")
else:
    st.success("No sample-ratio mismatch (chi-square p ≥ 0.001 in both windows).")
st.dataframe(srm, hide_index=True)

st.subheader("Business projection")
impact = doc.get("business_impact")
if impact is None:
    st.info("No projection for this look.")
else:
    st.warning(impact["label"], icon=":material/warning:")
    low, high = impact["daily_value_repeated_ci"]
    ci = f" (95 % CI {low:,.2f} to {high:,.2f})" if low is not None else ""
    st.metric("Projected value per day", f"{impact['daily_value']:,.2f}{ci}")
    st.markdown(f"Formula: `{impact['formula']}`; uplift per recommendation "
                f"({impact['metric']}): {impact['uplift_per_recommendation']:.5f}")  # fmt: skip
    st.markdown("**Assumptions** (params.yaml `abtest.business`):")
    assumed = [(name, str(value)) for name, value in impact["assumptions"].items()]
    st.dataframe(pd.DataFrame(assumed, columns=["assumption", "value"]), hide_index=True)

summary = load("summary")
if summary is not None:
    st.subheader(f"Report over {summary['days_analysed']} days")
    first = {m: v["first_significant_day"] for m, v in summary["final"].items()}
    st.dataframe(pd.DataFrame(first.items(), columns=["metric", "first significant day"]),
                 hide_index=True)  # fmt: skip
