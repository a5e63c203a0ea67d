"""What the tests share: a Streamlit session client, a supervisor harness, stand-ins for
GitHub, and helpers for lifecycle and overlay scenarios."""
