"""Models: val/test metrics beside the baselines, warm vs cold users, learning curves."""

import altair as alt
import streamlit as st

from app import data
from app.ui import load, missing

st.title("Models")
reports = load("eval_reports")
if not reports:
    missing("No model has been evaluated yet.", "dvc repro evaluate@ncf evaluate@ss4rec")
else:
    part = st.radio("Split", ["test", "val"], horizontal=True)
    st.subheader(f"{part}: models and baselines")
    st.dataframe(data.eval_table(reports, part), hide_index=True, width="stretch")
    st.caption(
        "RMSE/MAE: lower is better. HR@10, NDCG@10, MRR@10: full ranking, higher is better. "
        "A model ranks with the weights of its best epoch by train.early_stop_metric on val "
        "(rank epoch) and rates with those of its lowest val RMSE (rating epoch)."
    )
    warm, cold = st.columns(2)
    warm.subheader("Warm users (rated in train)")
    warm.dataframe(data.eval_table(reports, part, "warm"), hide_index=True)
    cold.subheader("Cold users (no training rating)")
    cold.dataframe(data.eval_table(reports, part, "cold"), hide_index=True)

st.subheader("Model registry")
registry = load("registry")
if registry is None or registry.empty:
    missing("No model is in a registry stage yet (GTO tags of the dvc.yaml artifacts).",
            "recsys promote   # assigns the A/B winner to prod")  # fmt: skip
else:
    st.dataframe(registry, hide_index=True, width="stretch")
    st.caption("Stages are GTO git tags (`gto show`); `recsys promote` assigns the A/B winner "
               "to prod, which the Recommendations page serves.")  # fmt: skip

st.subheader("Learning curves")
curves = load("learning_curves")
if curves is None:
    missing("No training run has logged learning curves (dvclive/<model>/) yet.",
            "dvc repro train@ncf train@ss4rec")  # fmt: skip
else:
    chart = alt.Chart(curves).mark_line(point=True).encode(
        x="step:Q", y=alt.Y("value:Q", scale=alt.Scale(zero=False)), color="model:N",
        tooltip=["model", "metric", "step", "value"],
    ).properties(width=260, height=180)  # fmt: skip
    facet = alt.Facet("metric:N", title=None)
    st.altair_chart(chart.facet(facet=facet, columns=3).resolve_scale(y="independent"))
