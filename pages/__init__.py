"""The dashboard's pages, in `pages/dashboard/`. `Home.py` lists them with `st.navigation`.

Keep no `.py` file directly in this folder: Streamlit treats a `pages/` folder with scripts as
an old-style multipage app (every script a page, run without Home.py) until `st.navigation`
is first called, which would let a first request open a page without the sign-in of Home.py.
"""
