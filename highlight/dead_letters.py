"""Dead letters: why a record is one, the headers that say so, a copy that always fits, and what a replay of
one publishes. Pure.

A dead letter is the original record (key, bytes, headers) with our headers after its own. When that is larger
than the producer or the dead-letter topic takes, it goes as a truncated copy whose headers give the original
size and SHA-256, so it is never dropped silently and the original can still be matched against the source.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from highlight.moment import INVALID_REASONS, InvalidMoment, InvalidReason

Header = tuple[str, bytes | None]
SizeOf = Callable[[bytes | None, bytes | None, Sequence[Header]], int]

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
DLQ_EXCEPTION_HEADER = "highlight.dlq.exception"
# A truncated copy says so, and names what it stands for.
TRUNCATED_HEADER = "highlight.dlq.truncated"
ORIGINAL_SIZE_HEADER = "highlight.dlq.original.size"
ORIGINAL_SHA256_HEADER = "highlight.dlq.original.sha256"
ORIGINAL_KEY_SIZE_HEADER = "highlight.dlq.original.key.size"
ORIGINAL_KEY_SHA256_HEADER = "highlight.dlq.original.key.sha256"
HEADERS_DROPPED_HEADER = "highlight.dlq.original.headers.dropped"

UNPROCESSABLE: Literal["unprocessable"] = "unprocessable"
# Every reason a dead letter carries in `highlight.dlq.reason`: one list, written by the dead-lettering path
# (`InvalidMoment.reason`, `Unprocessable.reason`), and the names `highlight dlq replay --reason` accepts.
DeadLetterReason = InvalidReason | Literal["unprocessable"]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = (*INVALID_REASONS, UNPROCESSABLE)
# An exception's message can quote anything (a whole record, in the worst case): the header keeps its start.
MAX_MESSAGE_CHARS = 1000
# How a truncated copy shares the room left after our headers: at most these parts go to its key and headers.
KEY_SHARE = 8
HEADERS_SHARE = 4
# A header's own framing: the varint lengths of its name and value.
HEADER_OVERHEAD = 10


@dataclass(frozen=True, slots=True)
class Unprocessable:
    """A record that failed in our own code path, or that Kafka refused: the same would happen on every retry."""

    exception: BaseException
    reason: Literal["unprocessable"] = UNPROCESSABLE

    @property
    def exception_class(self) -> str:
        """The exception's qualified class name, as Connect and Spring name it (`RecordTooLarge` in full)."""
        kind = type(self.exception)
        return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"

    def __str__(self) -> str:
        return f"{type(self.exception).__name__}: {self.exception}"


def dead_letter_headers(
    error: InvalidMoment | Unprocessable,
    topic: str,
    partition: int,
    offset: int,
    original: Sequence[Header] = (),
) -> list[Header]:
    """The original headers first, then where the record came from and what was wrong with it."""
    message = _clip(str(error)).encode()
    kind = (error.exception_class if isinstance(error, Unprocessable) else error.reason).encode()
    headers: list[Header] = [
        *original,
        (CONNECT_TOPIC, topic.encode()),
        (CONNECT_PARTITION, str(partition).encode()),
        (CONNECT_OFFSET, str(offset).encode()),
        (CONNECT_CLASS, kind),
        (CONNECT_MESSAGE, message),
        (SPRING_TOPIC, topic.encode()),
        (SPRING_PARTITION, struct.pack(">i", partition)),
        (SPRING_OFFSET, struct.pack(">q", offset)),
        (SPRING_CLASS, kind),
        (SPRING_MESSAGE, message),
        (DLQ_REASON_HEADER, error.reason.encode()),
    ]
    if isinstance(error, Unprocessable):
        headers.append((DLQ_EXCEPTION_HEADER, kind))
    return headers


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    truncated: bool = False


def fit(
    key: bytes | None,
    value: bytes | None,
    original: Sequence[Header],
    ours: Sequence[Header],
    *,
    budget: int,
    size_of: SizeOf,
) -> DeadLetter:
    """The record whole if it fits in `budget` bytes (as `size_of` counts them), else a truncated copy that does.

    The copy keeps our headers and the marks; the key whole if it takes at most an eighth of the room left, else
    its start; the original headers that fit in a quarter of it, each whole or not at all; then as much of the
    value as fits. `budget` must leave room for our headers (the settings keep it at 64 KiB or more).
    """
    whole = [*original, *ours]
    if size_of(key, value, whole) <= budget:
        # The producer takes a record with neither key nor value only as a tombstone with a key.
        return DeadLetter(key, b"" if key is None and value is None else value, whole)
    body = value or b""
    marks: list[Header] = [
        (TRUNCATED_HEADER, b"true"),
        (ORIGINAL_SIZE_HEADER, str(len(body)).encode()),
        (ORIGINAL_SHA256_HEADER, hashlib.sha256(body).hexdigest().encode()),
    ]
    key_marks: list[Header] = []
    if key is not None:
        key_marks = [
            (ORIGINAL_KEY_SIZE_HEADER, str(len(key)).encode()),
            (ORIGINAL_KEY_SHA256_HEADER, hashlib.sha256(key).hexdigest().encode()),
        ]
    room = budget - size_of(None, b"", [*ours, *marks, *key_marks, (HEADERS_DROPPED_HEADER, b"0000000000")])
    kept_key = key
    if key is not None and len(key) > room // KEY_SHARE:
        kept_key = key[: max(0, room // KEY_SHARE)]
        marks += key_marks
    kept: list[Header] = []
    spent = 0
    for name, header_value in original:
        cost = len(name.encode()) + len(header_value or b"") + HEADER_OVERHEAD
        if spent + cost <= room // HEADERS_SHARE:
            kept.append((name, header_value))
            spent += cost
    if len(kept) < len(original):
        marks.append((HEADERS_DROPPED_HEADER, str(len(original) - len(kept)).encode()))
    headers = [*kept, *ours, *marks]
    cut = body[: max(0, budget - size_of(kept_key, b"", headers))]
    # Length prefixes are varints: a longer value can need a byte or two more than the estimate.
    while cut and size_of(kept_key, cut, headers) > budget:
        cut = cut[: len(cut) - max(1, size_of(kept_key, cut, headers) - budget)]
    return DeadLetter(kept_key, cut, headers, truncated=True)


class Streak:
    """Unprocessable records in a row, in the order they finish: a bug that fails every record must stop the
    service rather than dead-letter the whole stream. Any other outcome starts the count again."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.count = 0

    def ok(self) -> None:
        if not self.broken:  # once broken, the service is stopping: records that finish meanwhile change nothing
            self.count = 0

    def failed(self) -> bool:
        """Count one more; True once it is more than `limit` in a row (this one must not be dead-lettered)."""
        self.count += 1
        return self.broken

    @property
    def broken(self) -> bool:
        return self.count > self._limit


# --- replaying a dead letter (`highlight dlq replay`) -------------------------------------------------------------

# The families of headers dead-lettering appends after the record's own: Connect's, Spring's and ours (the
# reason, the exception, the marks of a truncated copy), including any a later version adds to them.
DEAD_LETTER_HEADER_PREFIXES = ("__connect.errors.", "kafka_dlt-", "highlight.dlq.")

# Where a replayed moment was replayed from: the dead letter's topic, partition and offset (decimal text).
REPLAY_TOPIC_HEADER = "highlight.replay.topic"
REPLAY_PARTITION_HEADER = "highlight.replay.partition"
REPLAY_OFFSET_HEADER = "highlight.replay.offset"
REPLAY_HEADERS = (REPLAY_TOPIC_HEADER, REPLAY_PARTITION_HEADER, REPLAY_OFFSET_HEADER)


def dead_letter_reason(headers: Iterable[Header]) -> str | None:
    """The reason a dead letter carries, or None for a record without one (not written by highlight)."""
    reason = None
    for name, value in headers:
        if name == DLQ_REASON_HEADER and value is not None:
            reason = value.decode("utf-8", errors="replace")
    return reason


def is_truncated(headers: Iterable[Header]) -> bool:
    """Whether a dead letter is a truncated copy: its bytes are not the original's, so it cannot be replayed."""
    return any(name == TRUNCATED_HEADER and value == b"true" for name, value in headers)


def original_headers(headers: Sequence[Header]) -> list[Header]:
    """A dead letter's headers without the ones dead-lettering added: the record's own, in their order.

    Dead-lettering appends its headers after the record's own, so only that trailing block goes: a header of the
    record's own that happens to share a prefix with ours, somewhere before it, is kept.
    """
    end = len(headers)
    while end and headers[end - 1][0].startswith(DEAD_LETTER_HEADER_PREFIXES):
        end -= 1
    return list(headers[:end])


def replayed_headers(headers: Sequence[Header], topic: str, partition: int, offset: int) -> list[Header]:
    """The headers a replayed dead letter is published with: the record's own, then where it was replayed from.

    A record replayed before (and dead-lettered again) names only its latest replay.
    """
    own = [(name, value) for name, value in original_headers(headers) if name not in REPLAY_HEADERS]
    return [
        *own,
        (REPLAY_TOPIC_HEADER, topic.encode()),
        (REPLAY_PARTITION_HEADER, str(partition).encode()),
        (REPLAY_OFFSET_HEADER, str(offset).encode()),
    ]
