import pandas as pd
import streamlit as st

st.title("Pinned to an old Streamlit")
st.write(f"Streamlit {st.__version__} says hello")
st.dataframe(pd.DataFrame({"n": [1, 2, 3]}))
