import pytest

from peepers_common.errors import UnknownTopicError
from peepers_common.topics import (
    ML_TOPICS,
    NOTIFICATIONS_UNROUTED,
    PEEPERS_SELLERS,
    TOPICS,
    dlq_topic,
    notification_topic,
    topic_spec,
)


class TestTopicRegistry:
    @pytest.mark.parametrize(
        "ml_topic",
        [
            "orders_v2",
            "items",
            "items_prices",
            "questions",
            "messages",
            "shipments",
            "payments",
            "post_purchase",
        ],
    )
    def test_known_ml_topic_has_its_own_notification_topic(self, ml_topic: str) -> None:
        name = notification_topic(ml_topic)
        assert name == f"ml.notifications.{ml_topic}"
        assert name in TOPICS

    @pytest.mark.parametrize("ml_topic", ["vis_leads", "", "orders", "items.dlq", "../x"])
    def test_unknown_ml_topic_goes_to_unrouted(self, ml_topic: str) -> None:
        assert notification_topic(ml_topic) == NOTIFICATIONS_UNROUTED

    def test_every_consumed_topic_has_a_dead_letter_topic(self) -> None:
        consumed = [notification_topic(t) for t in ML_TOPICS] + [PEEPERS_SELLERS]
        for name in consumed:
            assert dlq_topic(name) in TOPICS, name

    def test_domain_topics_are_versioned_and_registered(self) -> None:
        for domain in ("orders", "catalog", "messages", "sellers"):
            assert f"peepers.{domain}.v1" in TOPICS

    def test_every_topic_has_partitions_and_a_retention(self) -> None:
        for spec in TOPICS.values():
            assert spec.partitions >= 1
            if spec.name.endswith(".changelog"):  # the system of record: kept, compacted
                assert spec.config["cleanup.policy"] == "compact"
                assert "retention.ms" not in spec.config
            else:
                assert int(spec.config["retention.ms"]) > 0

    def test_unknown_topic_name_is_a_clear_error(self) -> None:
        with pytest.raises(UnknownTopicError, match=r"add it to peepers_common\.topics"):
            topic_spec("ml.notifications.nope")
