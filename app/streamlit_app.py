"""The dashboard: `make app`, i.e. `streamlit run app/streamlit_app.py --server.address
127.0.0.1` (it serves nothing when Streamlit listens on more than loopback).

Reads the project in $RECSYS_ROOT (default: the working directory); writes nothing. The
sidebar's controls start Prefect deployments when a Prefect API is configured and the app was
started with RECSYS_CONTROLS=1, each after a confirmation.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts app/ on the path, not the repo root
    sys.path.insert(0, str(REPO))

import streamlit as st  # noqa: E402

from app.ui import controls, refuse_unless_loopback  # noqa: E402

PAGES = [
    ("views/pipeline.py", "Pipeline", "pipeline", ":material/account_tree:"),
    ("views/data_quality.py", "Data quality", "data_quality", ":material/fact_check:"),
    ("views/ab_results.py", "A/B results", "ab_results", ":material/science:"),
    ("views/models.py", "Models", "models", ":material/model_training:"),
    ("views/experiments.py", "Experiments", "experiments", ":material/table_chart:"),
    ("views/recommendations.py", "Recommendations", "recommendations", ":material/movie:"),
]

st.set_page_config(layout="wide")  # each st.Page title names the browser tab
refuse_unless_loopback()
pages = [st.Page(path, title=title, url_path=url, icon=icon) for path, title, url, icon in PAGES]


def start_page() -> None:
    """The address "/": go on to /pipeline (the default page itself has no path of its own)."""
    st.switch_page(pages[0])


# Streamlit serves the default page only at "/", so a hidden redirect is the default and every
# page keeps its path (/pipeline included); the sidebar lists the six pages itself.
navigation = st.navigation(
    [st.Page(start_page, title="RecSys dashboard", url_path="start", default=True), *pages],
    position="hidden",
)
with st.sidebar:
    for page in pages:
        st.page_link(page)
controls()
navigation.run()
