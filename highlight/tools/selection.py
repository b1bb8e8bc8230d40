"""Which dead letters a replay takes, and the tally it prints. Pure.

A selection is read from the command line once, refused in one line if it cannot select anything by construction
(an unknown reason, an inverted range, a time that is not RFC 3339), then asked about each dead letter in turn:
partitions ascending, offsets ascending, so `--limit N` always means the same N records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from highlight.dead_letters import DEAD_LETTER_REASONS, dead_letter_reason
from highlight.errors import ConfigError
from highlight.kafka import Record
from highlight.moment import parse_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How a dead letter without a reason header (not written by highlight) shows in the tally.
NO_REASON = "(none)"
KEY_SHOWN_CHARS = 60


class SelectionError(ConfigError):
    """A selection that cannot be read, or that selects nothing by construction; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Dead letters to replay. Offsets are the dead-letter topic's, both ends included; times are the dead
    letters' record times (when they were dead-lettered), `since` included and `until` excluded."""

    reasons: frozenset[str] = frozenset()  # empty: every reason
    partition: int | None = None
    from_offset: int = 0
    to_offset: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def partitions(self, count: int) -> list[int]:
        """The partitions to read, of a dead-letter topic with `count` partitions."""
        if self.partition is None:
            return list(range(count))
        if self.partition >= count:
            raise SelectionError(
                f"--partition {self.partition} does not exist: the dead-letter topic has {count} "
                f"partition{'s' if count != 1 else ''} (0..{count - 1})"
            )
        return [self.partition]

    def before_range(self, offset: int) -> bool:
        return offset < self.from_offset

    def past_range(self, offset: int) -> bool:
        return self.to_offset is not None and offset > self.to_offset

    def takes(self, reason: str | None, timestamp_ms: int) -> bool:
        """Whether a dead letter in the offset range is selected by its reason and its record time."""
        if self.reasons and reason not in self.reasons:
            return False
        at = record_time(timestamp_ms)
        if self.since is not None and at < self.since:
            return False
        return self.until is None or at < self.until


def record_time(timestamp_ms: int) -> datetime:
    # Exact: no float on the way, so a record on a boundary lands on the same side every time.
    return EPOCH + timedelta(milliseconds=timestamp_ms)


def selection_from(
    *,
    reasons: Sequence[str] | None = None,
    partition: str | None = None,
    from_offset: str | None = None,
    to_offset: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: str | None = None,
) -> Selection:
    """The selection the flags describe (each given as typed), or `SelectionError` naming the first bad one."""
    unknown = [reason for reason in reasons or () if reason not in DEAD_LETTER_REASONS]
    if unknown:
        raise SelectionError(
            f"--reason {unknown[0]!r} is not a dead-letter reason; dead letters carry {', '.join(DEAD_LETTER_REASONS)}"
        )
    selection = Selection(
        reasons=frozenset(reasons or ()),
        partition=_count("--partition", partition),
        from_offset=_count("--from-offset", from_offset) or 0,
        to_offset=_count("--to-offset", to_offset),
        since=_time("--since", since),
        until=_time("--until", until),
        limit=_count("--limit", limit, low=1),
    )
    if selection.to_offset is not None and selection.from_offset > selection.to_offset:
        raise SelectionError(
            f"--from-offset {selection.from_offset} is after --to-offset {selection.to_offset}: the range is empty"
        )
    if selection.since is not None and selection.until is not None and selection.since >= selection.until:
        raise SelectionError(f"--since {since} is not before --until {until}: the time range is empty")
    return selection


def _count(flag: str, raw: str | None, *, low: int = 0) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    # ASCII digits only: int() also reads other scripts' digits and underscores.
    if not (text.isascii() and text.isdigit()) or int(text) < low:
        raise SelectionError(f"{flag} must be an integer >= {low}, got {raw!r}")
    return int(text)


def _time(flag: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw.strip())
    except (ValueError, OverflowError):
        raise SelectionError(
            f"{flag} must be an RFC 3339 time with an offset, e.g. 2026-11-22T20:15:00+08:00, got {raw!r}"
        ) from None


# --- the tally ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What a replay did, by reason: selected (taken), replayed (published), skipped (read, not taken), and
    unreplayable (taken, but a truncated copy or refused by the producer)."""

    selected: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unreplayable: Counter[str] = field(default_factory=Counter)

    @property
    def taken(self) -> int:
        return sum(self.selected.values())

    def summary(self, dlq_topic: str, moments_topic: str, *, dry_run: bool) -> list[str]:
        selected, replayed, skipped = (sum(c.values()) for c in (self.selected, self.replayed, self.skipped))
        published = "nothing published (dry run)" if dry_run else f"{replayed} replayed to {moments_topic}"
        unreplayable = sum(self.unreplayable.values())
        cannot = f", {unreplayable} not replayable" if unreplayable else ""
        lines = [f"{dlq_topic}: {selected} selected, {published}{cannot}, {skipped} skipped"]
        reasons = sorted(set(self.selected) | set(self.skipped))
        if reasons:
            width = max(len("reason"), *(len(reason) for reason in reasons))
            lines.append(f"  {'reason':<{width}}  selected  replayed  skipped")
            for reason in reasons:
                counts = f"{self.selected[reason]:>8}  {self.replayed[reason]:>8}  {self.skipped[reason]:>7}"
                lines.append(f"  {reason:<{width}}  {counts}")
        return lines


def reason_shown(record: Record) -> str:
    return dead_letter_reason(record.headers) or NO_REASON


def describe(record: Record) -> str:
    """One dead letter on one line: where it is, why, its key and its size."""
    if record.key is None:
        key = "no key"
    else:
        text = record.key.decode("utf-8", errors="replace")
        key = "key " + repr(text if len(text) <= KEY_SHOWN_CHARS else text[: KEY_SHOWN_CHARS - 1] + "…")
    size = "no value" if record.value is None else f"{len(record.value)} bytes"
    return f"{record.topic}/{record.partition}@{record.offset} ({reason_shown(record)}, {key}, {size})"
