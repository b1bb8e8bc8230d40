"""What highlight publishes: result events and dead-letter headers. Pure."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from highlight.dedup import IN_DOUBT_MESSAGE, Entry
from highlight.moment import InvalidMoment, Moment

STATUSES = ("started", "duplicate", "failed", "expired", "in_doubt")
# The only backend before HIGHLIGHT_LIVE_API existed: what an entry without `api` was made by.
LEGACY_API = "live_tape_start"


def result_document(
    moment: Moment, bucket: int, bucket_seconds: int, status: str, entry: Entry | None, processed_at: datetime
) -> dict[str, Any]:
    """One result, built from the same state entry that answers redeliveries, so both always agree."""
    document: dict[str, Any] = {
        "event_id": moment.event_id,
        "channel_id": moment.channel_id,
        "bucket": bucket,
        "bucket_seconds": bucket_seconds,
        "status": status,
        "occurred_at": moment.occurred_at_text,
        "processed_at": processed_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if entry is not None and status != "expired":
        if entry.start_time is not None and entry.end_time is not None:
            document["start_time"] = entry.start_time
            document["end_time"] = entry.end_time
        document["api"] = entry.api or LEGACY_API
        if entry.request_id is not None:
            document["request_id"] = entry.request_id
        if status in ("started", "duplicate") and entry.task_id is not None:
            document["task_id"] = entry.task_id
        if status == "duplicate":
            document["started_by"] = entry.event_id
        elif entry.event_id == moment.event_id:
            document["attempts"] = entry.attempts
        if status == "failed":
            document["error"] = {"code": entry.error_code or "failed", "message": entry.error_message or ""}
        elif status == "in_doubt":
            document["error"] = {
                "code": entry.error_code or "in_doubt",
                "message": entry.error_message or IN_DOUBT_MESSAGE,
            }
    if moment.attributes is not None:
        document["attributes"] = moment.attributes
    return document


def encode_result(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


# Kafka Connect's dead-letter headers (decimal text) and Spring Kafka's (binary numbers, as its
# DeadLetterPublishingRecoverer writes them), so existing tooling of either kind reads ours.
CONNECT_TOPIC = "__connect.errors.topic"
CONNECT_PARTITION = "__connect.errors.partition"
CONNECT_OFFSET = "__connect.errors.offset"
CONNECT_CLASS = "__connect.errors.exception.class.name"
CONNECT_MESSAGE = "__connect.errors.exception.message"
SPRING_TOPIC = "kafka_dlt-original-topic"
SPRING_PARTITION = "kafka_dlt-original-partition"  # 4-byte big-endian int
SPRING_OFFSET = "kafka_dlt-original-offset"  # 8-byte big-endian long
SPRING_CLASS = "kafka_dlt-exception-fqcn"
SPRING_MESSAGE = "kafka_dlt-exception-message"
DLQ_REASON_HEADER = "highlight.dlq.reason"


def dead_letter_headers(
    error: InvalidMoment,
    topic: str,
    partition: int,
    offset: int,
    original: Sequence[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    """The original headers first, then where the record came from and what was wrong with it."""
    message = str(error).encode()
    return [
        *original,
        (CONNECT_TOPIC, topic.encode()),
        (CONNECT_PARTITION, str(partition).encode()),
        (CONNECT_OFFSET, str(offset).encode()),
        (CONNECT_CLASS, error.reason.encode()),
        (CONNECT_MESSAGE, message),
        (SPRING_TOPIC, topic.encode()),
        (SPRING_PARTITION, struct.pack(">i", partition)),
        (SPRING_OFFSET, struct.pack(">q", offset)),
        (SPRING_CLASS, error.reason.encode()),
        (SPRING_MESSAGE, message),
        (DLQ_REASON_HEADER, error.reason.encode()),
    ]
