"""Dedup by (channel_id, bucket): state entries, their wire format, and the decision for a moment. Pure.

The state topic is a changelog: the latest entry of a key is its truth. An `intent` is written and
acknowledged before a call, an outcome after it, so a key whose latest entry is an intent had a call cut off.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from highlight.moment import Moment

DedupKey = tuple[str, int]

# Clock skew between producers and us: state outlives its bucket's last live moment by this much.
EXPIRY_GRACE_SECONDS = 60


class Phase(enum.StrEnum):
    INTENT = "intent"
    STARTED = "started"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True)
class Entry:
    phase: Phase
    event_id: str  # the moment whose call this entry is about
    start_time: str | None = None
    end_time: str | None = None
    task_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    # Which backend made the call, and its request id: answers from state name them like the first answer.
    # Entries written before backends existed have none; only live_tape_start existed then.
    api: str | None = None
    request_id: str | None = None


def encode_key(key: DedupKey) -> bytes:
    # A JSON array cannot be confused by a channel id containing any separator.
    return orjson.dumps([key[0], key[1]])


def decode_key(raw: bytes) -> DedupKey:
    channel, bucket = orjson.loads(raw)
    if not isinstance(channel, str) or not isinstance(bucket, int) or isinstance(bucket, bool):
        raise ValueError(f"not a dedup key: {raw!r}")
    return channel, bucket


def encode_entry(entry: Entry) -> bytes:
    document: dict[str, Any] = {"phase": entry.phase.value, "event_id": entry.event_id}
    for name in ("start_time", "end_time", "task_id", "error_code", "error_message", "api", "request_id"):
        value = getattr(entry, name)
        if value is not None:
            document[name] = value
    if entry.attempts:
        document["attempts"] = entry.attempts
    return orjson.dumps(document)


def decode_entry(raw: bytes) -> Entry:
    document = orjson.loads(raw)
    return Entry(
        phase=Phase(document["phase"]),
        event_id=document["event_id"],
        start_time=document.get("start_time"),
        end_time=document.get("end_time"),
        task_id=document.get("task_id"),
        error_code=document.get("error_code"),
        error_message=document.get("error_message"),
        attempts=document.get("attempts", 0),
        api=document.get("api"),
        request_id=document.get("request_id"),
    )


def expires_at(bucket: int, bucket_seconds: int, max_event_age_seconds: int) -> int:
    """The UNIX second after which no live moment can fall into `bucket` any more."""
    return (bucket + 1) * bucket_seconds + max_event_age_seconds + EXPIRY_GRACE_SECONDS


# --- the decision for one moment ------------------------------------------------------------------


class Verdict(enum.Enum):
    ANSWER = "answer"  # the state already answers it: no call
    EXPIRED = "expired"  # too old to record
    CALL = "call"  # this moment starts the key's recording


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    status: str | None = None  # for ANSWER: the result status
    entry: Entry | None = None


IN_DOUBT_MESSAGE = "a call for this key may have started a recording; its outcome is unknown, so it is never re-sent"


def decide(moment: Moment, entry: Entry | None, now: datetime, max_event_age_seconds: int) -> Decision:
    """State first, so a redelivered moment gets its first answer; then age; then a call.

    Any moment of a key that has a recording is `duplicate`, even a late one: no call is made either way, and
    the result can say which recording covers it.
    """
    if entry is not None:
        if entry.phase is Phase.STARTED:
            status = "started" if entry.event_id == moment.event_id else "duplicate"
            return Decision(Verdict.ANSWER, status, entry)
        if entry.phase in (Phase.IN_DOUBT, Phase.INTENT):
            return Decision(Verdict.ANSWER, "in_doubt", entry)
        if entry.phase is Phase.FAILED and entry.event_id == moment.event_id:
            return Decision(Verdict.ANSWER, "failed", entry)
        # A different moment of a failed key may try again: nothing is recording.
    if (now - moment.occurred_at).total_seconds() > max_event_age_seconds:
        return Decision(Verdict.EXPIRED, "expired")
    return Decision(Verdict.CALL)
