"""The long-poll behind an open tab's watch (supervisor/proxy/watch.py): the token follows
the state and the instance (not a code-only push), a wait ends on a change and not before,
and one client cannot hold more than its share."""

from __future__ import annotations

import asyncio

from supervisor.proxy.watch import NOT_FOUND, StateWatch
from supervisor.routes import Route

KEY = b"k" * 32


def route(state: str = "running", port: int = 9000) -> Route:
    return Route(app_id=1, subdomain="a", state=state,
                 address=("127.0.0.1", port) if state == "running" else None)


class Table:
    def __init__(self) -> None:
        self.current: Route | None = route()

    def get(self, sub: str) -> Route | None:
        return self.current if sub == "a" else None


def test_token_follows_state_and_instance_not_a_code_push() -> None:
    table = Table()
    watch = StateWatch(table.get, KEY)
    state, first = watch.token("a")
    assert state == "running" and first.startswith("running.")
    assert "9000" not in first and "127.0.0.1" not in first
    table.current = route()  # the same instance republished (a code-only push)
    assert watch.token("a")[1] == first
    table.current = route(port=9001)  # a new instance (a redeploy)
    assert watch.token("a")[1] not in (first, "")
    table.current = route("over_limit")
    assert watch.token("a") == ("over_limit", "over_limit")
    table.current = None
    assert watch.token("a") == (NOT_FOUND, NOT_FOUND)
    assert StateWatch(table.get, b"other").token("b") == (NOT_FOUND, NOT_FOUND)


def test_a_wait_ends_when_the_state_changes_and_is_held_otherwise() -> None:
    table = Table()
    watch = StateWatch(table.get, KEY, hold=30.0, tick=0.01)

    async def scenario() -> None:
        _, token = watch.token("a")
        assert await watch.wait("a", None, "c") == {"state": "running", "token": token}
        assert (await watch.wait("a", "stale", "c"))["token"] == token  # at once
        waiting = asyncio.ensure_future(watch.wait("a", token, "c"))
        await asyncio.wait_for(_until(lambda: watch.held == 1), 5)
        assert not waiting.done()
        table.current = route("crashed")
        answer = await asyncio.wait_for(waiting, 5)
        assert answer == {"state": "crashed", "token": "crashed"}
        assert watch.held == 0
    asyncio.run(scenario())


def test_one_client_holds_at_most_its_share() -> None:
    table = Table()
    watch = StateWatch(table.get, KEY, hold=30.0, tick=0.01, per_client=2, total=3)

    async def scenario() -> None:
        _, token = watch.token("a")
        held = [asyncio.ensure_future(watch.wait("a", token, "greedy")) for _ in range(2)]
        await asyncio.wait_for(_until(lambda: watch.held == 2), 5)
        over = await asyncio.wait_for(watch.wait("a", token, "greedy"), 5)
        assert over["retry"] > 0  # answered at once, told when to ask again
        other = asyncio.ensure_future(watch.wait("a", token, "someone"))
        await asyncio.wait_for(_until(lambda: watch.held == 3), 5)
        assert "retry" in await asyncio.wait_for(watch.wait("a", token, "third"), 5)
        await watch.close()  # the proxy's shutdown answers every held wait
        for answer in await asyncio.wait_for(asyncio.gather(*held, other), 5):
            assert answer["token"] == token and "retry" not in answer
    asyncio.run(scenario())


async def _until(check: object) -> None:
    assert callable(check)
    while not check():
        await asyncio.sleep(0)
