"""Experiments: `dvc exp show` as a sortable table; pick two to diff."""

import streamlit as st

from app import data
from app.ui import load, missing

st.title("Experiments")
frame = load("experiments")
if frame is None:
    missing("No DVC experiments here yet.", "dvc exp run --set-param ncf.epochs=5   # for example")
    st.stop()

st.caption("`dvc exp show`: one row per commit or experiment; click a header to sort.")
everything = st.toggle("Show every metric (baselines, warm and cold users)", value=False)
shown = frame if everything else frame[data.headline_columns(frame)]
st.dataframe(shown, hide_index=True, width="stretch")
if not data.has_experiments(frame):
    missing("No experiment yet: the rows above are the workspace and the last commit.",
            "dvc exp run --set-param ncf.epochs=5   # for example")  # fmt: skip
    st.stop()
labels = data.experiment_labels(frame).tolist()
left, right = st.columns(2)
first = left.selectbox("First", labels, index=0)
second = right.selectbox("Second", labels, index=len(labels) - 1)
diff = data.experiment_diff(frame, first, second)
st.subheader(f"{first} vs {second}")
if diff.empty:
    st.success("They have the same params and metrics.")
else:
    st.dataframe(diff.astype(str), hide_index=True, width="stretch")
