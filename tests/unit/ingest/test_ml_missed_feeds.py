from typing import Any

import pytest

from peepers_common.errors import MlForbidden, MlUnavailable, PeepersError, ReauthRequired
from peepers_ingest.adapters import MlMissedFeedsSource
from tests.unit.ingest.fakes import notification_body


class FakeMissedFeedsApi:
    """ML's /missed_feeds over a list; sellers in `refused` get their token refused."""

    def __init__(self, count: int) -> None:
        self.entries = [notification_body(n) for n in range(count)]
        self.refused: dict[int, PeepersError] = {}
        self.fail: PeepersError | None = None
        self.ignore_offset = False
        self.calls: list[tuple[int, int, int]] = []

    async def missed_feeds(
        self, *, seller_id: int, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        self.calls.append((seller_id, offset, limit))
        if seller_id in self.refused:
            raise self.refused[seller_id]
        if self.fail is not None:
            raise self.fail
        start = 0 if self.ignore_offset else offset
        return self.entries[start : start + limit]


async def read(source: MlMissedFeedsSource) -> list[dict[str, Any]]:
    return [entry async for entry in source.missed_notifications()]


async def test_every_page_is_read_until_one_comes_back_short() -> None:
    api = FakeMissedFeedsApi(7)
    entries = await read(MlMissedFeedsSource(api, [1], page_size=3))
    assert entries == api.entries
    assert api.calls == [(1, 0, 3), (1, 3, 3), (1, 6, 3)]


async def test_a_full_last_page_is_followed_by_one_empty_page() -> None:
    api = FakeMissedFeedsApi(6)
    assert await read(MlMissedFeedsSource(api, [1], page_size=3)) == api.entries
    assert [offset for _, offset, _ in api.calls] == [0, 3, 6]


async def test_an_api_that_ignores_the_offset_does_not_make_the_round_loop_forever() -> None:
    api = FakeMissedFeedsApi(6)
    api.ignore_offset = True
    assert await read(MlMissedFeedsSource(api, [1], page_size=3)) == api.entries[:3]
    assert len(api.calls) == 2


async def test_a_refused_sellers_token_gives_way_to_the_next_seller_from_then_on() -> None:
    api = FakeMissedFeedsApi(4)
    api.refused[1] = ReauthRequired("seller 1 must log in again", seller_id=1)
    source = MlMissedFeedsSource(api, [1, 2], page_size=3)
    assert await read(source) == api.entries
    assert api.calls == [(1, 0, 3), (2, 0, 3), (2, 3, 3)]
    api.calls.clear()
    assert await read(source) == api.entries
    assert [seller for seller, _, _ in api.calls] == [2, 2]


async def test_when_every_seller_is_refused_the_last_refusal_surfaces() -> None:
    api = FakeMissedFeedsApi(4)
    api.refused[1] = ReauthRequired("seller 1 must log in again", seller_id=1)
    api.refused[2] = MlForbidden("403", status=403)
    with pytest.raises(MlForbidden):
        await read(MlMissedFeedsSource(api, [1, 2], page_size=3))


async def test_an_ml_outage_fails_the_round_without_trying_other_sellers() -> None:
    api = FakeMissedFeedsApi(4)
    api.fail = MlUnavailable("ML answered 503", status=503)
    with pytest.raises(MlUnavailable):
        await read(MlMissedFeedsSource(api, [1, 2], page_size=3))
    assert api.calls == [(1, 0, 3)]


def test_a_source_needs_at_least_one_seller() -> None:
    with pytest.raises(ValueError, match="at least one seller"):
        MlMissedFeedsSource(FakeMissedFeedsApi(0), [], page_size=3)
