"""Bad input ends in a visible state with the reason, and the supervisor survives it:
unreachable repo, missing branch, missing main file, a main file that is a symlink out of the
checkout, invalid requirements, an app that exits at once, a taken subdomain. Another app
keeps running throughout.

The corpus's failing repositories (tests/corpus/) are built through each runtime's real
builder: the message a deployer reads names the cause (the unknown package, the pin that
does not exist, the wheel that is not in the repository, the git URL that cannot be
fetched, the source tree whose build fails) and no host path."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.errors import ValidationError
from backend.platform.settings import Settings
from tests.support.corpus import BUILD_FAILURES, build_failure, host_details
from tests.support.supervisor_harness import wait_for_state


def test_failures_are_visible_and_isolated(ctx, admin, make_repo, hello_repo, supervisor,
                                           tmp_path) -> None:
    good = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="good")
    wait_for_state(ctx, good.id, {"running"}, sup=supervisor)

    cases = {}
    cases["unreachable"] = apps.deploy_app(
        ctx, admin, repo_url=str(tmp_path / "nowhere" / "repo.git"), subdomain="unreachable")
    cases["branch"] = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, branch="nope",
                                      subdomain="nobranch")
    cases["mainfile"] = apps.deploy_app(ctx, admin, repo_url=hello_repo.url,
                                        main_file="missing.py", subdomain="nomain")
    bad_reqs = make_repo("badreqs", {"streamlit_app.py": "import streamlit as st\n",
                                     "requirements.txt": "no-such-package-stcloud-x==9.9\n"})
    cases["requirements"] = apps.deploy_app(ctx, admin, repo_url=bad_reqs.url, subdomain="badreq")
    exits = make_repo("exits", {
        "streamlit_app.py": "import streamlit as st\n",
        "requirements.txt": "streamlit==1.67.0\npandas==3.1.1\n",
        ".streamlit/config.toml": '[server]\nsslCertFile = "/nonexistent.pem"\n'})
    cases["exits"] = apps.deploy_app(ctx, admin, repo_url=exits.url, subdomain="exits")
    escape = make_repo("escape", {"requirements.txt": "streamlit==1.67.0\n"})
    (escape.work / "streamlit_app.py").symlink_to("/etc/hostname")  # a file outside
    escape.commit({}, "main file is a symlink out of the checkout")
    cases["symlink"] = apps.deploy_app(ctx, admin, repo_url=escape.url, subdomain="escape")

    expected = {"unreachable": ("build_failed", "could not be read"),
                "branch": ("build_failed", "branch 'nope' does not exist"),
                "mainfile": ("build_failed", "'missing.py' does not exist"),
                "requirements": ("build_failed", "no-such-package-stcloud-x"),
                "exits": ("crashed", "sslKeyFile"),
                "symlink": ("build_failed", "symbolic link that leads outside")}
    for name, (state, text) in expected.items():
        app = wait_for_state(ctx, cases[name].id, {"running", "build_failed", "crashed"},
                             sup=supervisor)
        assert app.state == state, (name, app.state, app.state_reason)
        assert text in app.state_reason, (name, app.state_reason)
        events = apps.app_events(ctx, admin, app.id)
        assert events[0].to_state == state and text in events[0].reason
    logs = app_logs.read_logs(ctx, admin, cases["requirements"].id)
    assert "no-such-package-stcloud-x" in logs["build"]
    assert "sslKeyFile" in app_logs.read_logs(ctx, admin, cases["exits"].id)["app"]

    assert supervisor.alive()
    assert apps.get_app(ctx, admin, good.id).state == "running"

    with pytest.raises(ValidationError) as taken:
        apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="good")
    assert taken.value.field == "subdomain" and "taken" in taken.value.message


@pytest.mark.no_database
@pytest.mark.parametrize("engine", ["process", "docker"])
@pytest.mark.parametrize("name", list(BUILD_FAILURES))
def test_corpus_build_failure_names_its_cause(name: str, engine: str, settings: Settings,
                                              tmp_path: Path) -> None:
    message = build_failure(engine, settings, tmp_path, name)
    assert BUILD_FAILURES[name] in message, message
    assert not host_details(settings, message), message
