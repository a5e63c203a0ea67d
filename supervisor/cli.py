"""`python -m supervisor.cli`: the command line over the REST API (`/api/v1`).

    python -m supervisor.cli login --url http://localhost:8080 --token stc_...
    python -m supervisor.cli apps list [--json]
    python -m supervisor.cli apps sleep-policy ID [POLICY] [--wake-on-visit]
    python -m supervisor.cli deploy REPO [--branch main] [--main-file streamlit_app.py]
                                         [--subdomain NAME] [--python 3.12] [--wait]
    python -m supervisor.cli deploy .    [--remote NAME] [--branch B] [--main-file F]
    python -m supervisor.cli reboot ID | delete ID
    python -m supervisor.cli logs ID [--build] [--follow]
    python -m supervisor.cli secrets set ID -f secrets.toml

`login` checks the token (GET /apps) and keeps URL and token in
`~/.config/stcloud/cli.json` (mode 0600; `$STCLOUD_CLI_CONFIG` or `$XDG_CONFIG_HOME` move
it). Tokens come from the dashboard's Account page, or on the server from
`python -m supervisor.cli token create USERNAME --scopes read,deploy` (reads the server's
settings and database, like the operator commands `python -m supervisor create-user` and
`python -m supervisor reset-password`).
`deploy .` deploys the local working tree's remote, branch and main file (asking only when
they are ambiguous) and prints the build's phases and the URL once the app answers
(`supervisor/local_deploy.py`).
Exit status: 0 done, 1 the server refused (its message is printed), 2 usage or connection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import cast
from urllib.parse import urlencode

from supervisor import cli_sleep, local_deploy
from supervisor.api_client import Client, CliError


def config_path() -> Path:
    if os.environ.get("STCLOUD_CLI_CONFIG"):
        return Path(os.environ["STCLOUD_CLI_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "stcloud" / "cli.json"


def save_config(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load_config() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (FileNotFoundError, ValueError):
        raise CliError("Not logged in: run `python -m supervisor.cli login --url URL "
                       "--token TOKEN` first.", 2) from None
    return cast(dict[str, str], data)


def client() -> Client:
    cfg = load_config()
    return Client(cfg["url"], cfg["token"])


def out(text: str = "") -> None:
    print(text, flush=True)


# Commands ---------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    c = Client(args.url, args.token)
    c.call("GET", "/apps?limit=1")
    me = c.call("GET", "/me")
    path = save_config(args.url, args.token)
    out(f"Logged in to {args.url} as {me['username']} (scopes: {', '.join(me['scopes'])}); "
        f"saved to {path}")
    return 0


def cmd_apps_list(args: argparse.Namespace) -> int:
    apps = client().all_apps()
    if args.json:
        out(json.dumps(apps, indent=2))
        return 0
    rows = [("ID", "SUBDOMAIN", "STATE", "PYTHON", "WORKSPACE", "URL")] + [
        (str(a["id"]), a["subdomain"], a["state"], a.get("built_python") or "-",
         a["workspace"], a["url"]) for a in apps]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        out("  ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a repository URL (or a bare repository's path on the server), or the local
    git working tree at a path such as `.` and follow it until it answers
    (`supervisor.local_deploy`)."""
    tree = None
    if Path(args.repo).is_dir() and not git_bare(Path(args.repo)):
        tree = local_deploy.inspect_tree(Path(args.repo), args.remote, args.branch or "",
                                         args.main_file or "", out=out)
        out(f"Deploying {tree.root}: remote {tree.remote} ({tree.repo_url}), branch "
            f"{tree.branch}, main file {tree.main_file}")
    body = {"repo_url": tree.repo_url if tree else args.repo,
            "branch": tree.branch if tree else args.branch or "main",
            "main_file": tree.main_file if tree else args.main_file or "streamlit_app.py",
            "subdomain": args.subdomain or "", "python_version": args.python or ""}
    if args.secrets_file:
        body["secrets"] = Path(args.secrets_file).read_text()
    token = os.environ.get("STCLOUD_GIT_TOKEN", "")  # not an argument: `ps` shows those
    if token:
        body.update(git_token=token, git_username=args.git_username)
    if args.deploy_key:
        body["deploy_key"] = True
    c = client()
    try:
        app = c.call("POST", "/apps", body)
    except CliError as e:
        if tree and "(field: repo_url)" in str(e):
            raise CliError(f"{e} The platform clones {tree.repo_url} itself, from its own "
                           "host: the remote must be reachable from there (a URL of a git "
                           "host it can read); pick another with --remote.") from None
        raise
    out(f"Deploying app {app['id']} ({app['subdomain']}): {app['url']}")
    if app.get("deploy_key"):
        out("Add this read-only deploy key to the repository, then reboot the app "
            f"(python -m supervisor.cli reboot {app['id']}):\n{app['deploy_key']}")
        return 0
    if tree is None and not args.wait:
        out(f"Follow it with: python -m supervisor.cli logs {app['id']} --build --follow")
        return 0
    return local_deploy.follow(c, app, args.timeout, out, build_log=not args.quiet)


def git_bare(path: Path) -> bool:
    return local_deploy.git(path, "rev-parse", "--is-bare-repository", check=False) == "true"


def cmd_reboot(args: argparse.Namespace) -> int:
    app = client().call("POST", f"/apps/{args.id}/reboot")
    out(f"Rebooting app {app['id']} ({app['subdomain']}).")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client().call("DELETE", f"/apps/{args.id}")
    out(f"Deleting app {args.id}.")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    c = client()
    kind = "build" if args.build else "app"
    if not args.follow:
        sys.stdout.write(c.call("GET", f"/apps/{args.id}/logs?kind={kind}")["text"])
        sys.stdout.flush()
        return 0
    query = urlencode({"kind": kind, "follow": 1, "max_seconds": args.max_seconds})
    try:
        with c.open("GET", f"/apps/{args.id}/logs?{query}",
                    timeout=args.max_seconds + 30) as resp:
            while chunk := resp.read1(65536):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_secrets_set(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    saved = client().call("PUT", f"/apps/{args.id}/secrets", raw=text.encode(),
                          content_type="application/toml")
    out(f"Saved {saved['keys']} secret key(s) for app {args.id}"
        + (f"; environment variables: {', '.join(saved['env_vars'])}" if saved["env_vars"]
           else "") + ("; the app restarts." if saved["restarted"] else "."))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    """Server side: create a token for a user straight in the database."""
    from backend.accounts import api_tokens, auth
    from backend.context import open_context
    from backend.platform.settings_load import load_settings

    ctx = open_context(load_settings())
    user = auth.get_user(ctx, args.username)
    row, plaintext = api_tokens.create_token(ctx, user, args.name, args.scopes)
    print(f"Token {row.id} for {user.username} (scopes {row.scopes}); shown once:",
          file=sys.stderr)
    out(plaintext)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m supervisor.cli",
                                description="Command line for a self-hosted Streamlit "
                                "Cloud (its REST API).")
    sub = p.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login", help="check a token and save URL and token")
    login.add_argument("--url", required=True, help="the dashboard URL, e.g. "
                       "http://localhost:8080")
    login.add_argument("--token", required=True, help="a personal API token (stc_...)")
    login.set_defaults(func=cmd_login)

    apps = sub.add_parser("apps", help="list apps").add_subparsers(dest="apps_command",
                                                                     required=True)
    lst = apps.add_parser("list", help="apps you can see")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_apps_list)
    cli_sleep.add_parser(apps, client, out)

    dep = sub.add_parser("deploy", help="deploy an app from a git repository, or from the "
                         "local git working tree at a path such as '.'")
    dep.add_argument("repo", help="a repository URL, or a path in a local working tree")
    dep.add_argument("--branch", default="", help="default: main, or the tree's current one")
    dep.add_argument("--main-file", "--main", dest="main_file", default="",
                     help="the main file (default: found in the tree, else streamlit_app.py)")
    dep.add_argument("--remote", default="", help="the tree's remote (default: origin, or "
                     "the only one)")
    dep.add_argument("--subdomain", default="")
    dep.add_argument("--python", default="", help="Python version (default: the server's)")
    dep.add_argument("--secrets-file", default="", help="a secrets.toml to deploy with")
    dep.add_argument("--deploy-key", action="store_true", help="a private repository on any "
                     "git host over ssh: make the app a deploy key and print it to add")
    dep.add_argument("--git-username", default="", help="the username of the access token "
                     "in STCLOUD_GIT_TOKEN (a private repository over https)")
    dep.add_argument("--wait", action="store_true", help="follow a URL's deploy too (a "
                     "working tree's always is) until the app answers")
    dep.add_argument("--quiet", "-q", action="store_true", help="while following, print "
                     "the phases only, not the build log")
    dep.add_argument("--timeout", type=float, default=900, help="stop following after this "
                     "many seconds")
    dep.set_defaults(func=cmd_deploy)

    for name, func, text in (("reboot", cmd_reboot, "restart an app"),
                             ("delete", cmd_delete, "delete an app")):
        c = sub.add_parser(name, help=text)
        c.add_argument("id", type=int)
        c.set_defaults(func=func)

    logs = sub.add_parser("logs", help="print an app's log")
    logs.add_argument("id", type=int)
    logs.add_argument("--build", action="store_true", help="the build log, not the app's")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--max-seconds", type=int, default=600,
                      help="stop following after this long (at most 600)")
    logs.set_defaults(func=cmd_logs)

    sec = sub.add_parser("secrets", help="app secrets (write-only)").add_subparsers(
        dest="secrets_command", required=True)
    sset = sec.add_parser("set", help="replace an app's secrets with a TOML file")
    sset.add_argument("id", type=int)
    sset.add_argument("-f", "--file", required=True, help="secrets.toml ('-' for stdin)")
    sset.set_defaults(func=cmd_secrets_set)

    tok = sub.add_parser("token", help="server side: API tokens").add_subparsers(
        dest="token_command", required=True)
    tc = tok.add_parser("create", help="create a token for USERNAME (on the server)")
    tc.add_argument("username")
    tc.add_argument("--name", default="cli")
    tc.add_argument("--scopes", default="read,deploy", help="read, deploy, admin")
    tc.set_defaults(func=cmd_token_create)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from backend.errors import BackendError
        if isinstance(e, BackendError):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
