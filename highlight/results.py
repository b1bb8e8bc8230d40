"""What highlight publishes for a valid moment: its result event. Pure."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from highlight.dedup import IN_DOUBT_MESSAGE, Entry, Phase
from highlight.moment import Moment

STATUSES = ("started", "duplicate", "failed", "expired", "in_doubt", "skipped")
# Without these a result answers nothing (the result schema requires them).
REQUIRED_FIELDS = frozenset({"event_id", "channel_id", "bucket", "status", "occurred_at", "processed_at"})
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
        "processed_at": _utc_milliseconds(processed_at),
    }
    if status == "skipped" and entry is not None:
        document["reason"] = entry.reason or "running_limit"
    # A moment skipped by the budget made no call: no window, no API to name.
    called = entry is not None and not (entry.phase is Phase.SKIPPED and entry.attempts == 0)
    if entry is not None and status != "expired" and called:
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
        if status in ("failed", "skipped") and entry.error_code is not None:
            # For skipped: the API's own limit answer.
            document["error"] = {"code": entry.error_code, "message": entry.error_message or ""}
        elif status == "failed":
            document["error"] = {"code": "failed", "message": entry.error_message or ""}
        elif status == "in_doubt":
            document["error"] = {
                "code": entry.error_code or "in_doubt",
                "message": entry.error_message or IN_DOUBT_MESSAGE,
            }
    if moment.attributes is not None:
        document["attributes"] = moment.attributes
    return document


# The last millisecond formatted, as [its first instant, the next millisecond's, the text] (none at first): a
# batch of answers falls within a few milliseconds, so each is formatted once. Kept for the clock's instants, in
# UTC: two of them compare field by field, without asking their zone for an offset.
_last_formatted: list[Any] = [datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), ""]
_MILLISECOND = timedelta(milliseconds=1)


def _utc_milliseconds(instant: datetime) -> str:
    text: str
    first, after, text = _last_formatted
    if instant.tzinfo is UTC and first <= instant < after:
        return text
    text = instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if instant.tzinfo is UTC:
        # isoformat truncates to the millisecond: every instant of this one is written alike.
        first = instant.replace(microsecond=instant.microsecond - instant.microsecond % 1000)
        with contextlib.suppress(OverflowError):  # the last millisecond of year 9999 has no next one: not kept
            _last_formatted[:] = (first, first + _MILLISECOND, text)
    return text


def encode_result(document: dict[str, Any]) -> bytes:
    """The result as JSON; a field that cannot be encoded is left out and named in `dropped`.

    The parser's limits keep every field of a parsed moment encodable; this is the last resort that still
    publishes a started recording's `task_id` if something slips past them. A required field that cannot be
    encoded raises: there is no answer without it.
    """
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        # Each field at its own depth in the document: `{name: value}` nests it as the document does.
        unencodable = [name for name, value in document.items() if not _encodes({name: value})]
        if REQUIRED_FIELDS.intersection(unencodable):
            raise
        return orjson.dumps(dropping(document, *unencodable))


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def dropping(document: dict[str, Any], *fields: str) -> dict[str, Any]:
    """The document without `fields`, naming them in `dropped` (say, attributes too large for the topic)."""
    kept = {name: value for name, value in document.items() if name not in fields}
    gone = [*document.get("dropped", ()), *(name for name in fields if name in document)]
    if gone:
        kept["dropped"] = gone
    return kept
