"""Each run of the script prints a marker of its own, then the server exits at once."""
import os
import uuid

import streamlit as st

print(f"RUN-MARKER {uuid.uuid4().hex}", flush=True)
st.write("crashing")
os._exit(3)
