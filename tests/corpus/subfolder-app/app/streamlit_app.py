NAMES = ["six"]
import importlib.metadata as md

import streamlit as st

st.title("Dependency check")
for name in NAMES:
    __import__(name.replace("-", "_"))
    st.write(f"{name}={md.version(name)}")
