"""The publisher's cached partitioner puts every key where Kafka's default one does."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from peepers_common.kafka import _partition


def test_every_key_lands_on_the_default_partitioners_partition() -> None:
    rng = random.Random(7)
    default = DefaultPartitioner()
    for count in (1, 3, 6, 12):
        partitions = list(range(count))
        for _ in range(500):
            key = rng.randbytes(rng.randint(1, 64))
            expected = default(key, partitions, partitions)
            # Twice: the second answer comes from the cache.
            assert _partition(key, partitions, partitions) == expected
            assert _partition(key, partitions, partitions) == expected


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert {_partition(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
