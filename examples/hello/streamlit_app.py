"""The example app: deploy it from a local git repo to try the platform."""

import pandas as pd
import streamlit as st

st.title("Hello from a self-hosted Streamlit Cloud")
st.write("Edit this file, push, and watch the app update.")
df = pd.DataFrame({"x": range(10), "y": [v * v for v in range(10)]})
st.line_chart(df, x="x", y="y")
print("hello app rendered", flush=True)
