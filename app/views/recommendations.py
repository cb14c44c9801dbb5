"""Recommendations: a user's recent history and a model's top-10 for them (the model in the
registry's prod stage by default)."""

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
prod = load("prod_model")
default = models.index(prod) if prod in models else 0
model = st.selectbox("Model", models, index=default,
                     help="the registry's prod model first (`recsys promote`)")  # fmt: skip
serving = "in prod" if model == prod else "not in prod" if prod else "no model in prod yet"
st.subheader(f"Top-10 unseen items from {model} ({serving})")
result = load("top_k", model, user)
if isinstance(result, str):
    st.warning(result)
else:
    st.dataframe(result, hide_index=True, width="stretch")
