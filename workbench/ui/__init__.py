"""Streamlit helpers shared by the pages. They talk to workbench.api only."""
