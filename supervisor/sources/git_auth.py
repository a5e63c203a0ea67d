"""Git's credentials for an app's repository: the deploy key of a private GitHub repository
(backend.github.deploy_keys), or the app's own deploy key or access token for any other git
host (backend.repositories.credentials).

`deploy_key_env(ctx, app_id)` is a context manager giving the environment variables git
needs for that app: `{}` for an app without a credential (public repositories), for a key
`GIT_SSH_COMMAND` naming the app's private key, which is written for the duration to a
mode-0600 file in `<data_dir>/run/git-keys/` (directory 0700) and removed afterwards, for a
token git config in the environment scoped to the repository's URL (`token_env`). Use it
around every clone, fetch and ls-remote of the app, merged over gitsync's fixed environment
(how each is made: `backend.repositories.git_env`):

    with git_auth.deploy_key_env(ctx, app.id) as extra:
        env = {**gitsync._git_env(), **extra}

The ssh command offers only that key (`IdentitiesOnly`, no agent), never prompts
(`BatchMode`), ignores the user's ~/.ssh/config (`-F /dev/null`, so nothing there adds keys
or proxies), and checks the server against `<data_dir>/known_hosts`: GitHub's published
host keys are pinned there on deploy (`deploy_keys.pin_host_keys`); a host seen for the
first time is accepted (`accept-new`), a changed host key is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backend.apps import previews
from backend.context import Context
from backend.github.deploy_keys import deploy_key_for_app
from backend.repositories import credentials, git_env
from backend.repositories.git_env import key_env, key_file, ssh_command, token_env

__all__ = ["deploy_key_env", "key_env", "key_file", "ssh_command", "token_env"]


@contextmanager
def deploy_key_env(ctx: Context, app_id: int, port: int | None = None) -> Iterator[dict[str, str]]:
    """Environment overrides for git commands on `app_id`'s repository (only the trusted CA
    without a credential): its GitHub deploy key, else its own deploy key or access token
    (`backend.repositories.credentials`). `port` is only needed when the ssh URL cannot
    carry it (scp-like `git@host:path`)."""
    app_id = previews.credential_source(ctx, app_id)  # a preview reads as its app does
    private_key = deploy_key_for_app(ctx, app_id)
    if private_key is not None:
        with key_env(ctx, private_key, port) as env:
            yield {**git_env.trust_env(ctx), **env}
        return
    found = credentials.credential_for_app(ctx, app_id)
    credential, repo_url = found if found is not None else (None, "")
    with git_env.credential_env(ctx, credential, repo_url, port) as env:
        yield env
