"""Dedup by (channel_id, bucket): state entries, their wire format, and the decision for a moment. Pure.

The state topic is a changelog: the latest entry of a key is its truth. An `intent` is written and
acknowledged before a call, an outcome after it, so a key whose latest entry is an intent had a call cut off.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from highlight.moment import Moment
from highlight.recording import cst_timestamp, next_cst_midnight

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


# --- recordings: what an entry spends, and how long it must be kept ------------------------------------

# Entries that are, or may be, a recording: a budget counts them, and they may cover later moments.
RECORDING_PHASES = frozenset({Phase.STARTED, Phase.IN_DOUBT, Phase.INTENT})
# `encode_entry` writes these exactly, and escapes the quotes of string values, so raw bytes cannot contain them
# by accident (the same argument as `state.INTENT_MARK`).
_NOT_RECORDING = (b'"phase":"failed"', b'"phase":"skipped"')
_START = b'"start_time":"'
_END = b'"end_time":"'
_CST_LENGTH = len("YYYY-MM-DD HH:MM:SS")


def recording_span(value: Entry | bytes) -> tuple[float, float] | None:
    """(start, end) in UNIX seconds of an entry that is or may be a recording; None for any other entry.

    Raw bytes are read without decoding the entry (a restore reads it for every entry it keeps); an entry with
    no readable window (written before windows were kept) gives None.
    """
    if isinstance(value, Entry):
        if value.phase not in RECORDING_PHASES or value.start_time is None or value.end_time is None:
            return None
        start_text, end_text = value.start_time, value.end_time
    else:
        if any(mark in value for mark in _NOT_RECORDING):
            return None
        start_at, end_at = value.find(_START), value.find(_END)
        if start_at < 0 or end_at < 0:
            return None
        start_at, end_at = start_at + len(_START), end_at + len(_END)
        return _span_of(value[start_at : start_at + _CST_LENGTH], value[end_at : end_at + _CST_LENGTH])
    return _span_of(start_text, end_text)


def _span_of(start: str | bytes, end: str | bytes) -> tuple[float, float] | None:
    try:
        return _cst_seconds(start), _cst_seconds(end)
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def _cst_seconds(text: str | bytes) -> float:
    # Cached on the raw slice: a restore meets the same recent seconds over and over.
    return cst_timestamp(text if isinstance(text, str) else text.decode("ascii", errors="replace"))


def keep_until(
    key: DedupKey,
    value: Entry | bytes,
    *,
    bucket_seconds: int,
    max_event_age_seconds: int,
    keep_days: bool,
) -> float:
    """The UNIX second after which an entry may be deleted.

    Decided from the key alone for every entry inside its bucket's life (`expires_at`): a restore reads the
    value only of entries past it. A recording's entry is kept longer: until its window has ended and no live
    moment can fall inside it any more (a running count, and window-mode coverage, need it), and, with a daily
    limit (`keep_days`), until the CST day its window started on is over, so that day's count survives a
    restart. Those are the only entries kept past their bucket, so the memory this costs is bounded by the
    limits: about one running share plus one day's share of entries per instance (a few hundred bytes each).
    """
    until: float = expires_at(key[1], bucket_seconds, max_event_age_seconds)
    span = recording_span(value)
    if span is None:
        return until
    start, end = span
    until = max(until, end + max_event_age_seconds + EXPIRY_GRACE_SECONDS)
    if keep_days:
        until = max(until, next_cst_midnight(start) + EXPIRY_GRACE_SECONDS)
    return until


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
