"""The supervisor: reconcile loop, builds, git sync, runtimes, the proxy and schedules.

`python -m supervisor` runs all of it for one machine. It imports backend and models,
never streamlit (the dashboard is a child process it starts and watches).
"""
