NAMES = ["six"]
ABSENT = []  # installed only if a dev group or extra were (they must not be)
import importlib.metadata as md

import streamlit as st

st.title("Dependency check")
st.write(f"streamlit={st.__version__}")
for name in NAMES:
    __import__(name.replace("-", "_"))
    st.write(f"{name}={md.version(name)}")
for name in ABSENT:
    try:
        st.write(f"{name}={md.version(name)}")
    except md.PackageNotFoundError:
        st.write(f"{name}=absent")
