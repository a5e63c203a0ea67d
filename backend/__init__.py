"""Services shared by the dashboard, the API and the supervisor. Never imports streamlit."""
