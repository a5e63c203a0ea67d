import streamlit as st

st.write("never built")
