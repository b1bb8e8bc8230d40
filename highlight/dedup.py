"""Dedup: state entries, their keys and wire format, and the decision for a moment. Pure.

The state topic is a changelog: the latest entry of a key is its truth. An `intent` is written and
acknowledged before a call, an outcome after it, so a key whose latest entry is an intent had a call cut off.

Two modes decide which moments share a recording (HIGHLIGHT_DEDUP_MODE):
- `bucket` (the default): a moment shares the recording of its (channel_id, bucket) key, whenever it started.
  Moments at 12:04:50 and 12:05:10 fall in different 5-minute buckets and start two recordings that overlap by
  98%.
- `window`: a moment shares its channel's recording whenever that recording *covers* it, that is when at least
  HIGHLIGHT_MIN_COVER_SECONDS of its window lie after the moment; otherwise it starts a new one. Two
  recordings of one channel can then start in the same bucket (a recording from 12:00:00 to 12:05:00 covers a
  moment at 12:04:30 for only 30 s), so a window-mode recording is keyed by the moment that started it:
  (channel_id, bucket, event_id). A redelivered moment finds its own entry under that key; any other moment
  takes the earliest-starting recording that covers it, which later recordings (all starting later) cannot
  change, so it too gets its first answer again.

Switching modes keeps the state valid, because each mode reads the other's entries, and both pick the
earliest-starting of the recordings that cover a moment (one that started before the switch, for any moment
answered before it, so a redelivery is answered alike):
- `window` takes a recording under a moment's (channel_id, bucket) key as covering the moment, as `bucket`
  did, and any bucket-mode recording whose window covers a moment like a window-mode one.
- `bucket` takes a window-mode recording whose window covers a moment, and answers a redelivered moment that
  started one from its own entry, so it never starts a second recording for a covered moment.
Both last only as long as the other mode's entries do (minutes: see `keep_until`); then each mode is itself.

A recording's entry also remembers the files it has published clips for (`highlight.clipper`), and is kept
until its files are no longer awaited (HIGHLIGHT_CLIP_WAIT_SECONDS after its window, see `keep_until`).

`started` and `in_doubt` are final: no owner writes a different phase to a key after them (a clip only adds its
file to a `started` entry), so a record that does can only be a stalled member's late write, and reading the
state ignores it (`highlight.state`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from highlight.moment import Moment
from highlight.recording import cst_timestamp, next_cst_midnight

# (channel_id, bucket) in `bucket` mode; (channel_id, bucket, event_id of the moment that called) in `window` mode.
BucketKey = tuple[str, int]
WindowKey = tuple[str, int, str]
DedupKey = BucketKey | WindowKey

BUCKET_MODE = "bucket"
WINDOW_MODE = "window"
DEDUP_MODES = (BUCKET_MODE, WINDOW_MODE)

# Clock skew between producers and us: state outlives its bucket's last live moment by this much.
EXPIRY_GRACE_SECONDS = 60


class Phase(enum.StrEnum):
    INTENT = "intent"
    STARTED = "started"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    # The budget (or the API's own limit answer) had no room: nothing is recording, no call was made for it or
    # the API refused it. Like `failed`, it answers its own moment again and lets another moment try.
    SKIPPED = "skipped"


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
    # For `skipped`: the limit that had no room (`running_limit`, `daily_limit`).
    reason: str | None = None
    # The recording files (Live's file_id) a clip was published for, in the order they were: each gets one.
    clipped_files: tuple[str, ...] = ()


def encode_key(key: DedupKey) -> bytes:
    # A JSON array cannot be confused by a channel id containing any separator. A window key's third element
    # makes versions that know only bucket keys skip it as unreadable rather than misread it.
    return orjson.dumps(list(key))


def decode_key(raw: bytes) -> DedupKey:
    parts = orjson.loads(raw)
    if isinstance(parts, list) and len(parts) in (2, 3):
        channel, bucket = parts[0], parts[1]
        if isinstance(channel, str) and isinstance(bucket, int) and not isinstance(bucket, bool):
            if len(parts) == 2:
                return channel, bucket
            if isinstance(parts[2], str):
                return channel, bucket, parts[2]
    raise ValueError(f"not a dedup key: {raw!r}")


def is_window_key(key: DedupKey) -> bool:
    return len(key) == 3


def encode_entry(entry: Entry) -> bytes:
    document: dict[str, Any] = {"phase": entry.phase.value, "event_id": entry.event_id}
    for name in ("start_time", "end_time", "task_id", "error_code", "error_message", "api", "request_id", "reason"):
        value = getattr(entry, name)
        if value is not None:
            document[name] = value
    if entry.attempts:
        document["attempts"] = entry.attempts
    if entry.clipped_files:
        document["clipped_files"] = list(entry.clipped_files)
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
        reason=document.get("reason"),
        clipped_files=_file_ids(document.get("clipped_files", [])),
    )


def _file_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(file_id, str) for file_id in value):
        raise ValueError(f"clipped_files must be a list of strings, got {value!r}")
    return tuple(value)


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
    clip_wait_seconds: int = 0,
) -> float:
    """The UNIX second after which an entry may be deleted.

    Decided from the key alone for every entry inside its bucket's life (`expires_at`): a restore reads the
    value only of entries past it. A recording's entry is kept longer: until its window has ended and no live
    moment can fall inside it any more (a running count, and window-mode coverage, need it), and, with a daily
    limit (`keep_days`), until the CST day its window started on is over, so that day's count survives a
    restart. Those are the only entries kept past their bucket, so the memory this costs is bounded by the
    limits: about one running share plus one day's share of entries per instance (a few hundred bytes each).
    And it is kept until `clip_wait_seconds` after its window's end, so that a recording file arriving by then
    still finds its recording (and the files already clipped): about that many seconds' recordings more.
    """
    until: float = expires_at(key[1], bucket_seconds, max_event_age_seconds)
    span = recording_span(value)
    if span is None:
        return until
    start, end = span
    until = max(until, end + max(max_event_age_seconds, clip_wait_seconds) + EXPIRY_GRACE_SECONDS)
    if keep_days:
        until = max(until, next_cst_midnight(start) + EXPIRY_GRACE_SECONDS)
    return until


# --- the decision for one moment ------------------------------------------------------------------


class Verdict(enum.Enum):
    ANSWER = "answer"  # the state already answers it: no call
    EXPIRED = "expired"  # too old to record
    CALL = "call"  # this moment starts a recording, under `Decision.key`


class Decision(NamedTuple):
    """A named tuple, not a frozen dataclass: one is built for every moment, and a frozen dataclass costs several
    times more to build."""

    verdict: Verdict
    status: str | None = None  # for ANSWER: the result status
    entry: Entry | None = None
    key: DedupKey | None = None  # ANSWER: the key of the answering entry; CALL: the key to record under


IN_DOUBT_MESSAGE = "a call for this key may have started a recording; its outcome is unknown, so it is never re-sent"


def decide(moment: Moment, entry: Entry | None, now: datetime, max_event_age_seconds: int) -> Decision:
    """`bucket` mode with the entry of the moment's own (channel_id, bucket) key, and nothing else to read.

    State first, so a redelivered moment gets its first answer; then age; then a call. Any moment of a key that
    has a recording is `duplicate`, even a late one: no call is made either way, and the result can say which
    recording covers it.
    """
    if entry is not None:
        answer = _own(entry) if entry.event_id == moment.event_id else _covered(entry)
        if answer is not None:
            return answer
        # A different moment of a failed or skipped key may try again: nothing is recording.
    if (now - moment.occurred_at).total_seconds() > max_event_age_seconds:
        return Decision(Verdict.EXPIRED, "expired")
    return Decision(Verdict.CALL)


@dataclass(frozen=True, slots=True)
class DedupRules:
    mode: str  # BUCKET_MODE or WINDOW_MODE
    bucket_seconds: int
    min_cover_seconds: int
    max_event_age_seconds: int


def bucket_key(moment: Moment, bucket_seconds: int) -> BucketKey:
    return moment.channel_id, moment.bucket(bucket_seconds)


def window_key(moment: Moment, bucket_seconds: int) -> WindowKey:
    return moment.channel_id, moment.bucket(bucket_seconds), moment.event_id


def covers(span: tuple[float, float], instant: float, min_cover_seconds: int, max_event_age_seconds: int) -> bool:
    """Whether a recording's window holds at least `min_cover_seconds` after `instant`.

    A recording that started when a moment at `instant` was already too old to record is not that moment's: an
    expired moment redelivered after another moment started a recording is still `expired`.
    """
    start, end = span
    return start <= instant + max_event_age_seconds and end - max(start, instant) >= min_cover_seconds


def decide_among(moment: Moment, candidates: Mapping[DedupKey, Entry], now: datetime, rules: DedupRules) -> Decision:
    """The decision for a moment, given the entries of its channel that may answer it: its (channel_id, bucket)
    key's and its window key's, and the window-mode entries of the channel (in `window` mode, every entry of the
    channel). Entries of other channels are never consulted, so extra ones do no harm.

    In order: the moment's own entry (a redelivery: its first answer again); the earliest-starting recording
    that covers it, a recording under its bucket key counting as covering every moment of the bucket in both
    modes; its age; a call under the mode's key.
    """
    bucket = moment.bucket(rules.bucket_seconds)
    by_bucket: BucketKey = (moment.channel_id, bucket)
    mine: WindowKey = (moment.channel_id, bucket, moment.event_id)
    for key in (by_bucket, mine):
        entry = candidates.get(key)
        if entry is not None and entry.event_id == moment.event_id:
            return Decision(Verdict.ANSWER, _OWN_STATUS[entry.phase], entry, key)
    covering = _earliest_covering(moment, candidates, rules, by_bucket)
    if covering is not None:
        key, entry = covering
        status = _COVERED_STATUS.get(entry.phase)
        assert status is not None  # noqa: S101 -- only recordings cover
        return Decision(Verdict.ANSWER, status, entry, key)
    if (now - moment.occurred_at).total_seconds() > rules.max_event_age_seconds:
        return Decision(Verdict.EXPIRED, "expired")
    return Decision(Verdict.CALL, key=by_bucket if rules.mode == BUCKET_MODE else mine)


# The answer a moment got when its own entry was written.
_OWN_STATUS = {
    Phase.STARTED: "started",
    Phase.INTENT: "in_doubt",
    Phase.IN_DOUBT: "in_doubt",
    Phase.FAILED: "failed",
    Phase.SKIPPED: "skipped",
}
# The answer for a moment that another moment's recording covers; entries that record nothing cover nothing.
_COVERED_STATUS = {Phase.STARTED: "duplicate", Phase.IN_DOUBT: "in_doubt", Phase.INTENT: "in_doubt"}


def _own(entry: Entry) -> Decision:
    return Decision(Verdict.ANSWER, _OWN_STATUS[entry.phase], entry)


def _covered(entry: Entry) -> Decision | None:
    status = _COVERED_STATUS.get(entry.phase)
    return None if status is None else Decision(Verdict.ANSWER, status, entry)


def _earliest_covering(
    moment: Moment, candidates: Mapping[DedupKey, Entry], rules: DedupRules, by_bucket: BucketKey
) -> tuple[DedupKey, Entry] | None:
    """The earliest-starting recording that covers the moment: its bucket key's recording, which covers every
    moment of the bucket as bucket mode always said, and those whose window covers it (window-mode entries only,
    in bucket mode). Recordings made later start later, so a redelivered moment is answered from the same one."""
    instant = moment.occurred_at.timestamp()
    best: tuple[float, DedupKey, Entry] | None = None
    for key, entry in candidates.items():
        if key[0] != moment.channel_id or entry.phase not in RECORDING_PHASES:
            continue
        span = recording_span(entry)
        if key == by_bucket:
            if span is not None and span[0] > instant + rules.max_event_age_seconds:
                continue  # started when the moment was too old to record: not its recording (see `covers`)
            start = -math.inf if span is None else span[0]  # an entry without a window still holds its bucket
        elif rules.mode == BUCKET_MODE and not is_window_key(key):
            continue  # another bucket: bucket mode records it anew
        elif span is None or not covers(span, instant, rules.min_cover_seconds, rules.max_event_age_seconds):
            continue
        else:
            start = span[0]
        # The key breaks a tie, so the choice never depends on the order the entries came in.
        if best is None or (start, key) < (best[0], best[1]):
            best = (start, key, entry)
    return None if best is None else (best[1], best[2])
