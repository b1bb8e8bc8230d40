"""What a recording is, whichever API starts it: its window, its options, China Standard Time, the clamps. Pure.

Every recording API takes the same real-time recording: it starts when the call is made and lasts 5 to 30
minutes, and its times are CST wall-clock strings whatever the host's zone. The protocols in `highlight.apis`
only spell these in their own parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

CST = ZoneInfo("Asia/Shanghai")
# China has kept UTC+8 without daylight saving since 1991: day arithmetic on UNIX seconds needs no zone lookup.
CST_OFFSET_SECONDS = 8 * 3600
_DAY = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
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


@lru_cache(maxsize=8192)
def cst_timestamp(text: str) -> float:
    """UNIX seconds of a `YYYY-MM-DD HH:MM:SS` CST string (as `format_cst` writes it); ValueError otherwise.

    Cached: a restore reads the same recent seconds over and over, and strptime is slow.
    """
    return parse_cst(text).timestamp()


def cst_day(unix_seconds: float) -> date:
    """The China Standard Time calendar day of an instant: the day Tencent counts a recording on."""
    return date.fromordinal(cst_day_number(unix_seconds) + _EPOCH_ORDINAL)


def cst_day_number(unix_seconds: float) -> int:
    """`cst_day` as days since 1970-01-01: cheap to compute and to count by."""
    return int((unix_seconds + CST_OFFSET_SECONDS) // _DAY)


def next_cst_midnight(unix_seconds: float) -> float:
    """The UNIX second at which the CST day of `unix_seconds` ends."""
    return ((unix_seconds + CST_OFFSET_SECONDS) // _DAY + 1) * _DAY - CST_OFFSET_SECONDS


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
