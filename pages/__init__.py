"""The dashboard's pages. `Home.py` lists them explicitly with `st.navigation`, so the helper
module `_ui.py` is never shown as a page. Pages import `backend` only (import-linter)."""
