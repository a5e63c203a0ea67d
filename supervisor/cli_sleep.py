"""`python -m supervisor.cli apps sleep-policy`: show or set an app's sleep policy (the
REST API's `/apps/{id}/sleep-policy`).

    python -m supervisor.cli apps sleep-policy ID                      # show it
    python -m supervisor.cli apps sleep-policy ID idle 12h [--wake-on-visit]
    python -m supervisor.cli apps sleep-policy ID schedule mon-fri 08:00-18:00 Europe/Berlin
    python -m supervisor.cli apps sleep-policy ID never | default [--no-wake-on-visit]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from supervisor.api_client import Client


def show(policy: dict[str, Any]) -> str:
    visits = "a visit wakes it by itself" if policy["wake_on_visit"] else \
        "a visit shows the sleeping page with its wake-up button"
    return (f"App {policy['app_id']}: sleep policy {policy['policy']} "
            f"({policy['description']}); {visits}. Now {policy['state']}: "
            f"{policy['next_sleep']}.")


def command(client: Callable[[], Client], out: Callable[[str], None]
            ) -> Callable[[argparse.Namespace], int]:
    def cmd_sleep_policy(args: argparse.Namespace) -> int:
        c = client()
        path = f"/apps/{args.id}/sleep-policy"
        if not args.policy and args.wake_on_visit is None:
            out(show(c.call("GET", path)))
            return 0
        body: dict[str, Any] = {"policy": " ".join(args.policy) if args.policy else
                                c.call("GET", path)["policy"]}
        if args.wake_on_visit is not None:
            body["wake_on_visit"] = args.wake_on_visit
        out("Saved. " + show(c.call("PUT", path, body)))
        return 0
    return cmd_sleep_policy


def add_parser(apps: Any, client: Callable[[], Client], out: Callable[[str], None]) -> None:
    """Add `sleep-policy` to the `apps` subcommands."""
    p = apps.add_parser("sleep-policy", help="show or set an app's sleep policy",
                        description="Without POLICY: show the app's sleep policy and when "
                        "it next sleeps. POLICY is one of: default, never, idle 90m (or 12h, "
                        "7d), schedule mon-fri 08:00-18:00 Europe/Berlin.")
    p.add_argument("id", type=int)
    p.add_argument("policy", nargs="*", help="the new policy, e.g. idle 12h")
    p.add_argument("--wake-on-visit", dest="wake_on_visit", action="store_true",
                   default=None, help="a visit wakes the sleeping app by itself")
    p.add_argument("--no-wake-on-visit", dest="wake_on_visit", action="store_false",
                   help="a visit shows the sleeping page with its wake-up button")
    p.set_defaults(func=command(client, out))
