"""Serve the app in-process (what `workbench ui` runs): Streamlit plus the file routes of workbench/ui/files.py.

Why not plain `streamlit run app.py`:
- with a folder named `pages/` beside app.py, Streamlit treats the first script run after start-up as a legacy
  multipage app, so the first visitor to open a deep link such as /compare gets that page alone, without app.py's
  navigation and layout, until some session has run app.py. Telling Streamlit up front that pages/ holds
  st.navigation pages makes every first request go through app.py.
- checkpoints, bundles and metric exports stream from disk through HTTP routes (Range requests included) mounted
  with `st.App(..., routes=...)`; `st.download_button` would hold every byte in the server's memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"


def serve(address: str = "127.0.0.1", port: int = 8501) -> None:
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    from workbench.ui import files, live_data

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
    # App.run takes sys.argv[0] for the launcher script: point it at app.py, so sys.path, the script's argv and
    # its config folder are what `streamlit run app.py` gives (not the CLI's own folder, workbench/, whose module
    # names such as `config` would then shadow top-level packages)
    sys.argv = [str(APP)]
    st.App(APP, routes=files.routes() + live_data.routes()).run(config=flags)
