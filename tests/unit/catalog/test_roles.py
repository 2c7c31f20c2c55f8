"""The worker's roles (`Settings.role`): which agents, topics and group each runs."""

from __future__ import annotations

import asyncio

import pytest

from peepers_catalog.app import create_app
from peepers_catalog.settings import Settings


def _subscriptions(role: str) -> tuple[str, dict[str, set[str]]]:
    # The app takes the current event loop: a private one, closed after (not the tests').
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = create_app(Settings(role=role, app_id="cat", topic_prefix="p."))
        topics = {
            name.rpartition(".")[2]: set(agent.channel.topics) for name, agent in app.agents.items()
        }
        return app.conf.id, topics
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize("role", ["all", "items", "sync"])
def test_each_role_consumes_its_topics_and_their_retries_only(role: str) -> None:
    group, agents = _subscriptions(role)
    items = {"p.ml.notifications.items", "p.ml.notifications.items_prices"}
    sellers = {"p.peepers.sellers.v1"}
    expected: dict[str, set[str]] = {}
    if role != "sync":
        expected["items"] = items
    if role != "items":
        expected["sellers"] = sellers
    expected["retries"] = {f"{topic}.retry" for topics in expected.values() for topic in topics}
    assert agents == expected
    # The sync role is a group of its own: the two roles subscribe to different topics.
    assert group == ("cat-sync" if role == "sync" else "cat")
