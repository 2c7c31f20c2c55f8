"""Restoring auth's sellers view from its changelog, against a plain read of the same topic.

Fills a scratch topic shaped like ``peepers.auth.sellers.changelog`` (its partitions and
compaction config) with what auth writes for N connected sellers: one login record each,
then a refresh record for every ``--refreshed``-th seller, each sealed with a Fernet key
as auth seals it. Then, in the same run and for ``--rounds`` rounds, it times:

1. baseline: a plain aiokafka consumer reading the topic from its start to the end
   offsets taken first (no decoding, no Redis): the floor for any restore;
2. restore: ``peepers_common.changelog.Changelog`` with auth's ``RedisSellerStore`` as the
   view, into an empty scratch scope of the shared Redis (as auth's ACL user), from
   ``start()`` until ``ready``: what a replica does after a ``FLUSHALL``.

After each restore it checks that every seller is in the view, a refreshed one at its
refresh. Prints the median of each, records per second and the ratio, then deletes its
keys (by name, no SCAN) and its topic.

    uv run python -m bench.auth_restore [--sellers 10000] [--refreshed 10] [--rounds 3]

Needs the stack (``scripts/stack up``) with ``.stack/env`` sourced.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from bench.catalog_support import kafka_settings, log, run_then_delete_topics
from peepers_auth.adapters.redis_store import RedisSellerStore
from peepers_auth.crypto import TokenCipher
from peepers_auth.models import SealedTokens, SellerRecord
from peepers_auth.settings import Settings
from peepers_common.changelog import Changelog, RedisViewMarker
from peepers_common.kafka import end_offsets
from peepers_common.namespaces import Namespace, connect_redis
from peepers_common.settings import KafkaSettings
from peepers_common.topic_admin import ensure_topics
from peepers_common.topics import AUTH_SELLERS_CHANGELOG, TopicSpec, topic_spec
from tests.support import unique

FIRST_SELLER = 5_000_000_000
NOW = 1_800_000_000.0


def planned_writes(sellers: int, refreshed_every: int) -> Iterator[tuple[int, int]]:
    """(seller id, version) in write order: every login, then the refreshes."""
    for index in range(sellers):
        yield FIRST_SELLER + index, 1
    for index in range(0, sellers, refreshed_every):
        yield FIRST_SELLER + index, 2


def last_versions(sellers: int, refreshed_every: int) -> dict[int, int]:
    """Each seller's version once every planned write is applied."""
    return dict(planned_writes(sellers, refreshed_every))


def seller_record(seller_id: int, version: int) -> SellerRecord:
    return SellerRecord(
        seller_id=seller_id,
        version=version,
        status="connected",
        nickname=f"BENCH_{seller_id}",
        site_id="MLB",
        scope="offline_access read write",
        tokens=SealedTokens(
            seller_id=seller_id,
            access_token=SecretStr(f"APP_USR-1-010101-{seller_id:x}{version:04x}-{seller_id}"),
            refresh_token=SecretStr(f"TG-{seller_id:x}{version:08x}-{seller_id}"),
        ),
        expires_at=NOW + 21600,
        connected_at=NOW,
        updated_at=NOW,
        refreshes=version - 1,
    )


def _check(condition: bool, failure: str) -> None:
    if not condition:
        raise SystemExit(failure)


def ratio(restore_s: float, baseline_s: float) -> float:
    return restore_s / baseline_s if baseline_s > 0 else float("inf")


async def fill(
    kafka: KafkaSettings, topic: str, view: RedisSellerStore, sellers: int, every: int
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                key=str(seller_id).encode(),
                value=view.encode(seller_record(seller_id, version)).changelog_value(),
            )
            for seller_id, version in planned_writes(sellers, every)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return len(sent)


async def plain_read(kafka: KafkaSettings, topic: str) -> tuple[float, int]:
    started = time.perf_counter()
    ends = await end_offsets(kafka, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    read = 0
    try:
        await consumer.start()
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                read += len(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return time.perf_counter() - started, read


async def restore(
    kafka: KafkaSettings, topic: str, view_of: Namespace, cipher: TokenCipher
) -> tuple[float, float, int]:
    """(seconds to ready, seconds the restore itself took, records applied)."""
    redis = connect_redis(Settings().redis)
    try:
        view = RedisSellerStore(redis, view_of, cipher)
        marker = RedisViewMarker(redis, view_of, "sellers")
        started = time.perf_counter()
        async with Changelog(kafka, topic, view=view, marker=marker) as changelog:
            await changelog.verify()  # joins the restore start() began
            _check(changelog.ready, f"the view is not ready: {changelog.state}")
            to_ready = time.perf_counter() - started
            progress = changelog.progress.as_dict()
        return to_ready, float(progress["seconds"] or 0.0), int(progress["records"] or 0)
    finally:
        await redis.aclose()


async def check_and_delete(
    view_of: Namespace, cipher: TokenCipher, expected: dict[int, int]
) -> None:
    redis = connect_redis(Settings().redis)
    try:
        view = RedisSellerStore(redis, view_of, cipher)
        members = await view.seller_ids()
        _check(members == sorted(expected), f"{len(members)} sellers in the view")
        for seller_id in (min(expected), max(expected)):
            record = await view.get(seller_id)
            version = record.version if record else None
            _check(version == expected[seller_id], f"seller {seller_id} at version {version}")
        keys = [view_of.key("seller", seller_id) for seller_id in expected]
        keys += [view_of.key("sellers")]
        keys += [view_of.key("changelog", "sellers", part) for part in ("epoch", "restoring")]
        for start in range(0, len(keys), 1000):
            await redis.unlink(*keys[start : start + 1000])
    finally:
        await redis.aclose()


async def main(sellers: int, refreshed_every: int, rounds: int) -> None:
    kafka = kafka_settings()
    like = topic_spec(AUTH_SELLERS_CHANGELOG)
    topic = f"{unique('bench')}.{like.name}"
    await ensure_topics(kafka, [TopicSpec(topic, like.partitions, like.description, like.config)])
    cipher = TokenCipher([SecretStr(TokenCipher.generate_key())])
    expected = last_versions(sellers, refreshed_every)
    redis = connect_redis(Settings().redis)  # sealing needs no Redis round trip
    try:
        started = time.perf_counter()
        sealer = RedisSellerStore(redis, Namespace("auth"), cipher)
        written = await fill(kafka, topic, sealer, sellers, refreshed_every)
    finally:
        await redis.aclose()
    log(f"{written} records for {sellers} sellers in {time.perf_counter() - started:.1f} s")
    baselines, to_ready, restores = [], [], []
    for round_ in range(1, rounds + 1):
        baseline_s, read = await plain_read(kafka, topic)
        _check(read == written, f"the plain read got {read} of {written} records")
        baselines.append(baseline_s)
        scope = Namespace("auth", scope=unique("bench"))
        ready_s, restore_s, applied = await restore(kafka, topic, scope, cipher)
        _check(applied == written, f"the restore applied {applied} of {written} records")
        await check_and_delete(scope, cipher, expected)
        to_ready.append(ready_s)
        restores.append(restore_s)
        log(
            f"round {round_}: plain read {baseline_s:.3f} s, restore {restore_s:.3f} s "
            f"(ready after {ready_s:.3f} s)"
        )
    base, rest, ready = (statistics.median(v) for v in (baselines, restores, to_ready))
    print(f"sellers {sellers}, records {written}, rounds {rounds} (medians)")
    print(f"baseline  plain aiokafka read   {base:8.3f} s  {written / base:10.0f} records/s")
    print(f"restore   changelog -> Redis    {rest:8.3f} s  {written / rest:10.0f} records/s")
    print(f"ready     start() to ready      {ready:8.3f} s")
    print(f"restore / baseline              {ratio(rest, base):8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--refreshed", type=int, default=10, help="every n-th seller refreshed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run_then_delete_topics(main(args.sellers, args.refreshed, args.rounds))
