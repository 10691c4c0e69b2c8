"""Workbench: train recommendation, streaming-CTR and Spleeter models from the browser.

Run with `workbench ui` (or `streamlit run app.py`). Pages are UI only; everything else is in workbench.api.
"""

import streamlit as st

from workbench import api

st.set_page_config(page_title="Workbench", page_icon="🧪", layout="wide")
try:
    api.engine()  # opens the store once per process; an old schema is refused here with what to run
except api.StoreSchemaError as exc:
    st.error(str(exc))
    st.stop()


@st.cache_resource
def _housekeeping() -> bool:
    """Once per server process: find lost runs and start queued ones every few seconds (page reads never do)."""
    api.start_housekeeping()
    return True


_housekeeping()

pages = [
    st.Page("pages/new_run.py", title="New run", default=True),
    st.Page("pages/runs.py", title="Runs"),
    st.Page("pages/dashboard.py", title="Dashboard"),
    st.Page("pages/checkpoints.py", title="Checkpoints"),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/study.py", title="Studies"),
]
st.navigation(pages).run()
