"""Runs figlet, which only packages.txt installs, and shows what it printed."""

import shutil
import subprocess
from pathlib import Path

import streamlit as st

art = subprocess.run(["figlet", "hi"], capture_output=True, text=True, check=True).stdout
st.text(art)
st.write(f"figlet-path={shutil.which('figlet')}")
st.write(f"debian={Path('/etc/debian_version').read_text().strip()}")
try:
    Path("/usr/bin/planted-by-app").write_text("x")
    st.write("root-writable=yes")
except OSError:
    st.write("root-writable=no")
