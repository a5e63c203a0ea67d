"""`python -m supervisor.mcp [--url URL]`: the MCP server over stdio, for an assistant to
start on the user's machine. The API token comes from `$STCLOUD_TOKEN`; without it (or
without `--url`), from the CLI's saved login (`python -m supervisor.cli login`)."""

from __future__ import annotations

import argparse
import os
import sys

from supervisor.api_client import Client, CliError
from supervisor.cli import load_config
from supervisor.mcp.tools import build_server

TOKEN_ENV = "STCLOUD_TOKEN"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor.mcp", description="MCP server "
                                "(stdio) over a self-hosted Streamlit Cloud's REST API, "
                                f"acting with the API token in ${TOKEN_ENV}.")
    p.add_argument("--url", default="", help="the dashboard URL, e.g. https://cloud.example"
                   ".org (default: the CLI's saved login)")
    args = p.parse_args(argv)
    url, token = args.url, os.environ.get(TOKEN_ENV, "")
    if not url or not token:
        try:
            saved = load_config()
        except CliError:
            print(f"error: give the platform's address with --url and an API token in "
                  f"${TOKEN_ENV} (create one on the dashboard's Account page), or log in "
                  "once with `python -m supervisor.cli login`.", file=sys.stderr)
            return 2
        url, token = url or saved["url"], token or saved["token"]
    build_server(Client(url, token)).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
