"""Tencent Cloud Live's event notifications: is a body authentic, and what does a recording-file one say. Pure.

A notification is a JSON object POSTed by Live to the callback template's URL. Its numbers arrive as JSON
numbers or as decimal strings, depending on the account's era; both are read alike. It is signed like the
legacy API: `sign = md5(callback_key + t)`, where `t` is the signature's expiry (UNIX seconds). The signature
covers the key and `t` only, not the body; Live re-sends a notification for about 12 minutes, maybe with its
first `t`, hence a grace period after `t`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from highlight.config.setting import MAX_NOTIFICATION_BYTES
from highlight.signing import verify

MAX_BODY_BYTES = MAX_NOTIFICATION_BYTES
RECORDING_FILE = 100
# The documented event types; a metric label names one of these, `other`, or `unknown` (unreadable body).
EVENT_TYPES = {
    0: "stream stopped",
    1: "stream started",
    100: "recording file",
    200: "screenshot",
    321: "push error",
    332: "recording status",
    338: "subtitles",
}
# Longer than any UNIX time or 64-bit id; bounds int() on hostile input.
MAX_DIGITS = 20
# 9999-12-31T23:59:59Z: later times have no RFC 3339 form.
MAX_UNIX_SECONDS = 253_402_300_799

# What the receiver makes of a body.
AUTHENTIC = "authentic"
BAD_SIGN = "bad_sign"
EXPIRED = "expired"
MALFORMED = "malformed"
TOO_LARGE = "too_large"


class InvalidNotification(ValueError):
    """A record of the callbacks topic that is not a usable recording-file notification; `reason` is stable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Inspected:
    """A body as the receiver sees it: the verdict, and what it stores and logs for an authentic one."""

    verdict: str  # AUTHENTIC, BAD_SIGN, EXPIRED, MALFORMED or TOO_LARGE
    event_type: int | None = None
    channel: str | None = None
    file_id: str | None = None
    task_id: str | None = None
    t: int | None = None


@dataclass(frozen=True, slots=True)
class RecordingFile:
    """One recording file of a recording-file notification (`event_type` 100)."""

    channel_id: str  # `stream_id`, else `channel_id`
    file_id: str
    video_url: str
    start_time: int  # UNIX seconds
    end_time: int
    # A decimal string for a numeric id; other ids (CreateRecordTask's) as given; None when absent.
    task_id: str | None = None
    file_format: str | None = None
    file_size: int | None = None
    duration: int | float | None = None
    # A non-empty `record_temp_id`: the file of a template recording, not of an API task.
    template: bool = False


def integer(value: object) -> int | None:
    """A non-negative integer given as a JSON number or a decimal string; None for anything else."""
    if isinstance(value, bool):  # an int to Python, never to JSON
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        return int(value)
    return None


def number(value: object) -> int | float | None:
    """A finite non-negative number, JSON or decimal string (`"12"`, `"12.5"`); None for anything else."""
    whole = integer(value)
    if whole is not None:
        return whole
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and len(value) <= MAX_DIGITS:
        whole_part, dot, fraction = value.partition(".")
        if dot and whole_part.isdigit() and fraction.isdigit():
            return float(value)
    return None


def event_type_label(event_type: int | None) -> str:
    """A bounded metric label: the documented type's number, `other`, or `unknown` when unreadable."""
    if event_type is None:
        return "unknown"
    return str(event_type) if event_type in EVENT_TYPES else "other"


def read_document(body: bytes | None) -> dict[str, Any]:
    """The JSON object of a body, or InvalidNotification."""
    if body is None:
        raise InvalidNotification("empty", "no body")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidNotification("invalid_json", "not JSON (or not UTF-8)") from None
    if not isinstance(document, dict):
        raise InvalidNotification("not_an_object", f"JSON {type(document).__name__}, not an object")
    return document


def channel_of(document: Mapping[str, Any]) -> str | None:
    """`stream_id`, else `channel_id` (the same on current accounts): the channel a moment names."""
    for name in ("stream_id", "channel_id"):
        value = document.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def authenticate(document: Mapping[str, Any], key: str, now: float, grace_seconds: float) -> str:
    """AUTHENTIC when `sign == md5(key + str(t))` and `now <= t + grace`; else BAD_SIGN or EXPIRED.

    `t` is hashed exactly as it was sent, number or string. A missing or unreadable `t` or `sign` cannot be
    verified: BAD_SIGN. The sign is checked first, so a stranger learns nothing from the clock rule.
    """
    t_raw, given = document.get("t"), document.get("sign")
    t = integer(t_raw)
    # Hashed as sent: a decimal string as it is, a number as Python writes it (no sign, no leading zeros).
    if t is None or not isinstance(given, str) or not verify(key, t_raw if isinstance(t_raw, str) else t, given):
        return BAD_SIGN
    return AUTHENTIC if now <= t + grace_seconds else EXPIRED


def inspect(body: bytes, key: str, now: float, grace_seconds: float) -> Inspected:
    """What the receiver answers for a body, and what it logs; nothing of an unauthentic body is trusted."""
    if len(body) > MAX_BODY_BYTES:
        return Inspected(TOO_LARGE)
    try:
        document = read_document(body)
    except InvalidNotification:
        return Inspected(MALFORMED)
    event_type = integer(document.get("event_type"))
    verdict = authenticate(document, key, now, grace_seconds)
    if verdict != AUTHENTIC:
        return Inspected(verdict, event_type)
    file_id = document.get("file_id")
    return Inspected(
        AUTHENTIC,
        event_type,
        channel_of(document),
        file_id=_text_id(file_id),
        task_id=_task_id(document.get("task_id")),
        t=integer(document.get("t")),
    )


def parse_recording_file(document: Mapping[str, Any]) -> RecordingFile:
    """A recording-file notification's file, or InvalidNotification naming what is missing or wrong."""
    event_type = integer(document.get("event_type"))
    if event_type != RECORDING_FILE:
        raise InvalidNotification("not_a_file", f"event_type {document.get('event_type')!r}, not {RECORDING_FILE}")
    channel = channel_of(document)
    if channel is None:
        raise InvalidNotification("schema", "no stream_id or channel_id")
    file_id = _text_id(document.get("file_id"))
    if file_id is None:
        raise InvalidNotification("schema", "no file_id")
    video_url = document.get("video_url")
    if not isinstance(video_url, str) or not video_url:
        raise InvalidNotification("schema", "no video_url")
    start, end = _unix(document, "start_time"), _unix(document, "end_time")
    if end < start:
        raise InvalidNotification("schema", f"end_time {end} is before start_time {start}")
    file_format = document.get("file_format")
    return RecordingFile(
        channel_id=channel,
        file_id=file_id,
        video_url=video_url,
        start_time=start,
        end_time=end,
        task_id=_task_id(document.get("task_id")),
        file_format=file_format if isinstance(file_format, str) and file_format else None,
        file_size=integer(document.get("file_size")),
        duration=number(document.get("duration")),
        template=document.get("record_temp_id") not in (None, "", 0, "0"),
    )


def _unix(document: Mapping[str, Any], name: str) -> int:
    value = integer(document.get(name))
    if value is None or value > MAX_UNIX_SECONDS:
        raise InvalidNotification("schema", f"{name} must be UNIX seconds, got {document.get(name)!r}")
    return value


def _text_id(value: object) -> str | None:
    """An id as a string: a non-empty string as given, a number in decimal."""
    if isinstance(value, str):
        return value or None
    whole = integer(value)
    return None if whole is None else str(whole)


def _task_id(value: object) -> str | None:
    """Decimal for a numeric id (`"007"` and `7` are one id), other non-empty strings as given."""
    whole = integer(value)
    if whole is not None:
        return str(whole)
    return value if isinstance(value, str) and value else None
