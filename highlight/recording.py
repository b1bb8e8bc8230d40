"""What a recording is, whichever API starts it: its window, its options, China Standard Time, the clamps. Pure.

Every recording API takes the same real-time recording: it starts when the call is made and lasts 5 to 30
minutes, and its times are CST wall-clock strings whatever the host's zone. The protocols in `highlight.apis`
only spell these in their own parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

CST = ZoneInfo("Asia/Shanghai")
CST_FORMAT = "%Y-%m-%d %H:%M:%S"
CST_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)

MIN_RECORD_SECONDS = 300
# The documents cap a real-time recording at 30 minutes.
MAX_RECORD_SECONDS = 1800


def now_utc() -> datetime:
    return datetime.now(UTC)


def format_cst(instant: datetime) -> str:
    """China Standard Time wall clock, whatever the host's zone; `instant` must be aware."""
    if instant.tzinfo is None:
        raise ValueError("a naive datetime has no defined instant")
    return instant.astimezone(CST).strftime(CST_FORMAT)


def parse_cst(text: str) -> datetime:
    """The inverse of `format_cst`, strict about the documented shape."""
    if not CST_PATTERN.fullmatch(text):
        raise ValueError(f"not 'YYYY-MM-DD HH:MM:SS': {text!r}")
    return datetime.strptime(text, CST_FORMAT).replace(tzinfo=CST)


def clamp_record_seconds(requested: int) -> int:
    """Real-time recordings last 5 to 30 minutes."""
    return max(MIN_RECORD_SECONDS, min(MAX_RECORD_SECONDS, requested))


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """What a moment may ask of its recording; `None` leaves the API's default."""

    channel_id: str
    record_seconds: int
    file_format: str | None = None
    record_type: str | None = None
    domain: str | None = None
    path: str | None = None
    mix_stream: int | None = None


@dataclass(frozen=True, slots=True)
class RecordingWindow:
    """The start and end a call sends, as CST wall-clock strings."""

    start_time: str
    end_time: str


def window_at(now: datetime, record_seconds: int) -> RecordingWindow:
    """The recording window of an attempt made at `now`: real time starts now."""
    # Elapsed time is added in UTC: wall-clock arithmetic in a zone with DST would bend the length.
    start = now.astimezone(UTC)
    return RecordingWindow(
        start_time=format_cst(start),
        end_time=format_cst(start + timedelta(seconds=clamp_record_seconds(record_seconds))),
    )
