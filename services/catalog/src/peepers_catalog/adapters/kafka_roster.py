"""`SellerRoster` on a compacted Kafka topic (``peepers.catalog.sellers.changelog``).

Why Kafka and not auth's token broker or ``peepers.sellers.v1``: the roster must survive
what it is for (the loss of Redis), must say which sellers *this cache* held (a new
namespace, such as a fresh ``make run`` or a test's scope, holds none and needs no
rebuild), and must not expire (``peepers.sellers.v1`` keeps 30 days; a seller connected
before that would never come back). One record per (namespace, seller), written with
acks=all before the seller's first sync; compaction keeps the last one per key.
"""

from __future__ import annotations

import json

from peepers_common.kafka import EventPublisher, read_to_end
from peepers_common.namespaces import Namespace
from peepers_common.settings import KafkaSettings


class KafkaSellerRoster:
    def __init__(
        self, publisher: EventPublisher, kafka: KafkaSettings, topic: str, namespace: Namespace
    ) -> None:
        self._publisher = publisher
        self._kafka = kafka
        self._topic = topic
        self._prefix = namespace.prefix

    async def keep(self, seller_id: int) -> None:
        value = {"namespace": self._prefix, "seller_id": seller_id}
        await self._publisher.publish(
            self._topic, key=f"{self._prefix}{seller_id}".encode(), value=json.dumps(value).encode()
        )

    async def sellers(self) -> list[int]:
        kept: set[int] = set()
        for record in await read_to_end(self._kafka, [self._topic]):
            if record.value is None or not (record.key or b"").startswith(self._prefix.encode()):
                continue
            value = json.loads(record.value)
            if value.get("namespace") == self._prefix:  # not a longer scope sharing the prefix
                kept.add(int(value["seller_id"]))
        return sorted(kept)
