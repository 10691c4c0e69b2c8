"""Study: one hyper-parameter search live: best so far, intermediate values, parameters, trials, promote."""

import streamlit as st

from workbench import api
from workbench.ui.study import actions, live, pick_study

st.title("Studies")
study = pick_study()
if study is not None:
    live(study)
    actions(study, api.study_report(study.id, with_importances=False))
