"""Dashboard pages (run by `st.navigation` from Home.py) and their shared helpers (`_ui`).
Pages import `backend` only (import-linter)."""
