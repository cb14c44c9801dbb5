"""Recommendations: a user's recent history and each saved model's top-10 for them."""

import streamlit as st

from app.ui import load, missing

st.title("Recommendations")
users = load("user_choices")
if users is None:
    missing("The split is not built yet.", "dvc repro split")
    st.stop()

user = st.selectbox("User", users, help="users of the test period first, most active first")
st.subheader(f"Recent history of user {user}")
st.dataframe(load("history_of", user), hide_index=True, width="stretch")

models = load("checkpoints")
if not models:
    missing("No trained model checkpoint (models/<model>.pt) yet.",
            "dvc repro train@ncf train@ss4rec")  # fmt: skip
    st.stop()
st.subheader("Top-10 unseen items per model")
for column, model in zip(st.columns(len(models)), models, strict=True):
    column.markdown(f"**{model}**")
    result = load("top_k", model, user)
    if isinstance(result, str):
        column.warning(result)
    else:
        column.dataframe(result, hide_index=True, width="stretch")
