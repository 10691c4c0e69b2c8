"""Serve the app in-process (what `workbench ui` runs).

Why not plain `streamlit run app.py`: with a folder named `pages/` beside app.py, Streamlit treats the first script
run after start-up as a legacy multipage app, so the first visitor to open a deep link such as /compare gets that
page alone, without app.py's navigation and layout, until some session has run app.py. Telling Streamlit up front
that pages/ holds st.navigation pages makes every first request go through app.py.
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"


def serve(address: str = "127.0.0.1", port: int = 8501) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import bootstrap

    PagesManager.uses_pages_directory = False
    # the same settings as .streamlit/config.toml, which Streamlit reads only from the current folder
    flags = {
        "server.address": address,
        "server.port": port,
        "server.headless": True,
        "server.fileWatcherType": "none",
        "server.maxUploadSize": 1024,
        "browser.gatherUsageStats": False,
        "client.toolbarMode": "minimal",
    }
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [], flags)
