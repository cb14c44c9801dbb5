"""A/B results: what was compared, the decision, effects over days, power, guardrails, tests
in both units, SRM, exploratory segments, seeds, and the projection."""

import altair as alt
import pandas as pd
import streamlit as st

from app import data
from app.ui import load, missing

st.title("A/B results (offline replay)")
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
st.markdown(f"**Model A (control):** `{doc['model_a']}` — **model B:** `{doc['model_b']}` "
            f"({doc['checkpoints']})")  # fmt: skip
st.caption(doc["framing"])
decision = doc["decision"]
box = st.success if decision["b_better"] and not decision["a_better"] else st.info
box(decision["sentence"], icon=":material/gavel:")
st.caption(
    f"Rule: {decision['rule']} (alpha = {doc['alpha']}, design: {decision['design']}, "
    f"unit: {decision['unit']})."
)

level = f"{1 - doc['alpha']:.0%}"
st.subheader(f"Effect B − A with its {level} repeated CI (per metric), days 1..N")
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
clipped = sorted(effects.loc[effects["clipped"], "day"].unique()) if len(effects) else []
note = (
    f" The y axis fits days 3 onwards; the wider intervals of day(s) "
    f"{', '.join(map(str, clipped))} (few users) are clipped to it."
    if clipped
    else ""
)
st.caption(
    "Repeated CIs stay valid under the daily looks but are per metric, not adjusted for "
    f"the {len(effects['metric'].unique()) if len(effects) else 0} metrics (the table below "
    f"has the simultaneous ones).{note}"
)

st.subheader(f"Sequential look at day {day}: decision, intervals, power")
st.markdown(
    "The decision uses Holm-adjusted repeated p-values (valid under 20 daily looks). "
    f"`repeated_ci`: {level} per metric; `simultaneous_ci`: all metrics together at ≥ {level}. "
    "MDE: the smallest lift these looks detect with the configured power; users/days: what a "
    "lift of `abtest.target_lift` would need."
)
st.dataframe(data.sequential_frame(doc), hide_index=True, width="stretch")

st.subheader("Guardrails (non-inferiority, not in the Holm family)")
st.table(data.guardrail_frame(doc))

st.subheader(f"Tests at day {day}: paired vs user-randomised, per user and per event")
st.caption(
    "Per user: every user weighs the same. Per event: every event weighs the same (user-"
    "clustered delta-method SEs), so heavy raters dominate; the two can disagree when the "
    "effect differs between heavy and light users."
)
window_names = {"cumulative": f"days 1..{day}", "day": f"day {day} alone"}
window = st.radio("Window", list(window_names), horizontal=True, format_func=window_names.get)
st.dataframe(data.pvalue_frame(doc, window), hide_index=True, width="stretch")
with st.expander("Methods"):
    st.json(doc.get("methods", {}))

st.subheader("Sample-ratio mismatch (simulated user-randomised design)")
srm = data.srm_frame(doc)
randomised = doc["windows"]["cumulative"]["randomised"]
if randomised["valid"]:
    st.success("No sample-ratio mismatch (exact binomial p ≥ 0.001 over days 1..N).")
else:
    st.error(randomised["reason"])
st.dataframe(srm, hide_index=True)

st.subheader("Business projection")
impact = doc.get("business_impact")
if impact is None:
    st.info("No projection for this look.")
else:
    st.warning(impact["label"], icon=":material/warning:")
    low, high = impact["daily_value_repeated_ci"]
    ci = (
        f" ({impact['ci_level']:.0%} repeated CI {low:,.2f} to {high:,.2f})"
        if low is not None
        else ""
    )
    st.metric("Projected value per day", f"{impact['daily_value']:,.2f}{ci}")
    st.markdown(impact["line"])
    st.markdown("**Assumptions** (params.yaml `abtest.business`):")
    assumed = [(name, str(value)) for name, value in impact["assumptions"].items()]
    st.dataframe(pd.DataFrame(assumed, columns=["assumption", "value"]), hide_index=True)

segments = data.segment_frame(doc)
if len(segments):
    st.subheader("Segments (exploratory: no multiplicity correction, not sequential)")
    st.table(segments)

seeds = doc.get("seeds")
st.subheader("Across training seeds")
if seeds is None:
    st.info(f"{doc['checkpoints']}. List other seeds' prediction files in "
            "`abtest.seed_predictions_a` / `_b` to compare the models.")  # fmt: skip
else:
    rows = [
        {"metric": m, "seed-averaged B − A": r["seed_averaged"]["estimate"],
         "p": r["seed_averaged"]["p_value"], "pair min": r["pair_min"], "pair max": r["pair_max"],
         "pairs B significantly better": r["pairs_significant_b_better"]}
        for m, r in seeds["metrics"].items()
    ]  # fmt: skip
    st.table(pd.DataFrame(rows))

summary = load("summary")
if summary is not None:
    st.subheader(f"Report over {summary['days_analysed']} days")
    first = {m: v["first_significant_day"] for m, v in summary["final"].items()}
    st.dataframe(pd.DataFrame(first.items(), columns=["metric", "first significant day"]),
                 hide_index=True)  # fmt: skip
