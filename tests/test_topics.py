"""Topics at start-up (highlight.topics): the retry schedule, the dead-letter topic's limit, tansu's answers."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from highlight.topics import max_message_bytes, retry_delay
from tests.harness import Names, create_topics


def test_retries_back_off_from_half_a_second_to_five() -> None:
    assert [retry_delay(attempt) for attempt in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert retry_delay(10_000) == 5.0


def _response(*resources: tuple[int, str, list[tuple[str, str]]]) -> SimpleNamespace:
    return SimpleNamespace(
        resources=[
            (code, "", 2, name, [(key, value, False, 5, False, []) for key, value in entries])
            for code, name, entries in resources
        ]
    )


def test_max_message_bytes_is_read_for_the_named_topic_only() -> None:
    responses = [_response((0, "other", [("max.message.bytes", "10")]), (0, "dlq", [("max.message.bytes", "2048")]))]
    assert max_message_bytes(responses, "dlq") == 2048


def test_max_message_bytes_is_unknown_when_absent_refused_or_unreadable() -> None:
    assert max_message_bytes([_response((0, "dlq", [("cleanup.policy", "delete")]))], "dlq") is None
    assert max_message_bytes([_response((29, "dlq", [("max.message.bytes", "2048")]))], "dlq") is None
    assert max_message_bytes([_response((0, "dlq", [("max.message.bytes", "lots")]))], "dlq") is None
    assert max_message_bytes([], "dlq") is None


async def test_the_test_broker_reports_only_what_a_topic_was_created_with(bootstrap: str, names: Names) -> None:
    """tansu answers DescribeConfigs with explicit settings only; Apache Kafka also reports defaults."""
    await create_topics(bootstrap, {names.moments: 1})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names.dlq, 1, 1, topic_configs={"max.message.bytes": "2048"})])
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in (names.moments, names.dlq)]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    assert max_message_bytes(responses, names.moments) is None
    assert max_message_bytes(responses, names.dlq) == 2048
