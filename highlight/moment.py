"""Highlight moments: from Kafka bytes to a validated `Moment`, or a reason it is a dead letter. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Literal, NamedTuple, get_args

import fastjsonschema
import orjson

from highlight import schemas
from highlight.recording import RecordingOptions

# `attributes` nests at most this many levels of objects and arrays (itself being the first). orjson reads 1,024
# levels but writes only 254: without a bound, a moment could start a recording whose result cannot be written.
MAX_ATTRIBUTES_DEPTH = 64

# Why a moment is a dead letter, in the order they are checked: the values of its `highlight.dlq.reason` header
# (with `unprocessable`, `highlight.dead_letters.DEAD_LETTER_REASONS`).
InvalidReason = Literal["empty_value", "too_large", "invalid_utf8", "invalid_json", "not_an_object", "schema_violation"]
INVALID_REASONS: tuple[InvalidReason, ...] = get_args(InvalidReason)


class InvalidMoment(ValueError):
    """Why a record is a dead letter. `reason` is a stable machine code, the message is for people."""

    def __init__(self, reason: InvalidReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# A moment that names no priority; the reserve of each limit is for HIGHLIGHT_RESERVED_PRIORITY and above.
DEFAULT_PRIORITY = 50


class Moment(NamedTuple):
    """A valid moment. A named tuple, not a frozen dataclass: one is built for every record, and building a frozen
    dataclass costs several times more."""

    event_id: str
    channel_id: str
    occurred_at: datetime
    occurred_at_text: str
    duration_seconds: int | None = None
    file_format: str | None = None
    record_type: str | None = None
    domain: str | None = None
    path: str | None = None
    mix_stream: int | None = None
    attributes: dict[str, Any] | None = None
    priority: int = DEFAULT_PRIORITY

    def bucket(self, bucket_seconds: int) -> int:
        # A moment is asked for its bucket several times in a row (its candidates, its decision, its result): the
        # last answer is kept with the very datetime it was computed for (held here, so no other object can take
        # its identity), and datetimes are immutable.
        instant = self.occurred_at
        last_instant, last_seconds, last_bucket = _last_bucket[0]  # one tuple: read whole, replaced whole
        if instant is last_instant and bucket_seconds == last_seconds:
            return last_bucket
        bucket = bucket_of(instant, bucket_seconds)
        _last_bucket[0] = (instant, bucket_seconds, bucket)
        return bucket

    def recording_options(self, default_record_seconds: int) -> RecordingOptions:
        return RecordingOptions(
            channel_id=self.channel_id,
            record_seconds=self.duration_seconds or default_record_seconds,
            file_format=self.file_format,
            record_type=self.record_type,
            domain=self.domain,
            path=self.path,
            mix_stream=self.mix_stream,
        )


# (instant, bucket_seconds, bucket) of the last `Moment.bucket` computed.
_last_bucket: list[tuple[datetime | None, int, int]] = [(None, 0, 0)]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 -- keep the constant readable


def bucket_of(instant: datetime, bucket_seconds: int) -> int:
    """floor(epoch / bucket): exact integer arithmetic, so instants on a boundary never flip buckets."""
    delta = instant - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds // bucket_seconds


_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>\d{2}):(?P<om>\d{2}))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime; stricter than `fromisoformat` (an offset is mandatory, and it must be RFC 3339)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not RFC 3339 with an offset: {text!r}")
    if match["z"]:
        tz = timezone.utc  # noqa: UP017
    else:
        offset = timedelta(hours=int(match["oh"]), minutes=int(match["om"]))
        if offset >= timedelta(hours=24) or int(match["om"]) >= 60:
            raise ValueError(f"offset out of range: {text!r}")
        tz = timezone(-offset if match["sign"] == "-" else offset)
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    year, month, day = (int(part) for part in match["date"].split("-"))
    return datetime(year, month, day, int(match["h"]), int(match["m"]), int(match["s"]), micro, tzinfo=tz)


def parse_occurred_at(text: str) -> datetime:
    """`parse_rfc3339`, through datetime's own C parser for the common shape (`T`, `Z` or an offset whose minutes
    are below 60), where both agree; anything else, and anything the C parser refuses, takes the strict path."""
    if len(text) >= 20 and text[10] == "T" and (text[-1] == "Z" or (text[-3] == ":" and text[-2] < "6")):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return parse_rfc3339(text)


# What nearly every moment carries. A moment with none of the schema's other properties is checked against the
# schema without them (and without its `allOf` rules, which only those properties can trigger): the same rules
# for what it has, minus the cost of the rest, above all the aac/audio rule, which raises an exception internally
# for every moment without a file_format.
_PLAIN = frozenset(("event_id", "channel_id", "occurred_at", "attributes"))


@cache
def _optional_ruled() -> frozenset[str]:
    return frozenset(schemas.load(schemas.MOMENT_SCHEMA)["properties"]) - _PLAIN


@cache
def _plain_validator() -> Callable[[Any], Any]:
    schema = dict(schemas.load(schemas.MOMENT_SCHEMA))
    # A rule that names only properties a plain moment lacks cannot fail for it; any other rule stays.
    kept = [rule for rule in schema.pop("allOf", []) if _PLAIN & _named(rule)]
    if kept:
        schema["allOf"] = kept
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k in _PLAIN}
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return compiled


def _named(rule: Any) -> set[str]:
    """Every property name a (sub)schema mentions under `required` or `properties`."""
    names: set[str] = set()
    if isinstance(rule, dict):
        names.update(rule.get("required", ()))
        names.update(rule.get("properties", {}))
        for value in rule.values():
            names |= _named(value)
    elif isinstance(rule, list):
        for value in rule:
            names |= _named(value)
    return names


def compile_validators() -> None:
    """Compile the schema validators now (tens of milliseconds) rather than on the first moment."""
    _plain_validator()
    schemas.validator(schemas.MOMENT_SCHEMA)


def validate_moment(document: dict[str, Any]) -> None:
    """The published schema's verdict on `document` (raises `schemas.ValidationError`)."""
    if _optional_ruled().isdisjoint(document):
        _plain_validator()(document)
    else:
        schemas.validator(schemas.MOMENT_SCHEMA)(document)


def parse_moment(value: bytes | None, *, max_bytes: int | None = None) -> Moment:
    """Validate in the documented order: size, bytes, UTF-8, JSON, object, schema, then the meaning of the fields.

    The size is checked before anything is decoded, so an oversized record costs nothing to refuse.
    """
    if value is None:
        raise InvalidMoment("empty_value", "the record has no value (a tombstone is not a moment)")
    if max_bytes is not None and len(value) > max_bytes:
        raise InvalidMoment(
            "too_large", f"value is {len(value)} bytes, above HIGHLIGHT_MAX_MOMENT_BYTES ({max_bytes}); not parsed"
        )
    try:
        # orjson reads the bytes as UTF-8 itself; only a refusal needs the two steps apart, to say which failed.
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        document = _decode_slowly(value)
    if not isinstance(document, dict):
        raise InvalidMoment("not_an_object", f"value is JSON {type(document).__name__}, not an object")
    plain = plain_moment(document)
    if plain is not None:
        return plain
    return _parse_document(document)


def _parse_document(document: dict[str, Any]) -> Moment:
    """The strict path: the schema's verdict, then the meaning of the fields."""
    try:
        validate_moment(document)
    except schemas.ValidationError as exc:
        raise InvalidMoment("schema_violation", _describe(exc)) from None
    try:
        occurred_at = parse_occurred_at(document["occurred_at"])
    except (ValueError, OverflowError) as exc:
        raise InvalidMoment("schema_violation", f"data.occurred_at is not a valid time: {exc}") from None
    attributes = document.get("attributes")
    if attributes is not None and nesting_exceeds(attributes, MAX_ATTRIBUTES_DEPTH):
        raise InvalidMoment(
            "schema_violation", f"data.attributes is nested more than {MAX_ATTRIBUTES_DEPTH} levels deep"
        )
    duration = document.get("duration_seconds")
    priority = document.get("priority")
    return Moment(
        event_id=document["event_id"],
        channel_id=document["channel_id"],
        occurred_at=occurred_at,
        occurred_at_text=document["occurred_at"],
        # JSON Schema counts 300.0 as an integer; the API wants digits.
        duration_seconds=None if duration is None else int(duration),
        file_format=document.get("file_format"),
        record_type=document.get("record_type"),
        domain=document.get("domain"),
        path=document.get("path"),
        mix_stream=None if document.get("mix_stream") is None else int(document["mix_stream"]),
        attributes=attributes,
        # JSON Schema counts 80.0 as an integer too.
        priority=DEFAULT_PRIORITY if priority is None else int(priority),
    )


# The common shape of occurred_at, for which `parse_occurred_at` takes datetime's C parser: ASCII digits, `T`, up
# to six fractional digits, `Z` or an offset of hours 00-23 and minutes 00-59. Where the C parser accepts a text of
# this shape, the date is a real one (month, day of month and leap year), the hour 0-23, the minute and the second
# 0-59: what the schema's pattern and its date-time format ask, and more.
_COMMON_OCCURRED_AT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",
    re.ASCII,
)


def plain_moment(document: dict[str, Any]) -> Moment | None:
    """The moment of a document the schema surely accepts, checked without the schema's validator; None for any
    other (the strict path then decides, with the validator's own words for a refusal).

    "Surely" means a plain moment (event_id, channel_id, occurred_at and perhaps attributes, nothing else) whose
    every field passes a test at least as strict as the schema's: exact types, the same lengths, `\\S` as "not all
    whitespace" (`str.isspace` is what the regex engine's `\\s` tests), "no control character" as `isprintable`
    (which refuses every control character, and more), occurred_at in the common shape and read by datetime's C
    parser, as `parse_occurred_at` reads it. The moment built is the strict path's, field for field
    (tests/test_moment.py holds the two paths to that on random and hostile documents).
    """
    size = len(document)
    if size == 3:
        attributes = None
    elif size == 4:
        attributes = document.get("attributes")
        if type(attributes) is not dict:
            return None
    else:
        return None
    event_id = document.get("event_id")
    channel_id = document.get("channel_id")
    text = document.get("occurred_at")
    if type(event_id) is not str or type(channel_id) is not str or type(text) is not str:
        return None
    if not 0 < len(event_id) <= 1024 or event_id.isspace():
        return None
    if not 0 < len(channel_id) <= 256 or channel_id.isspace() or not channel_id.isprintable():
        return None
    if _COMMON_OCCURRED_AT.fullmatch(text) is None:
        return None
    try:
        occurred_at = datetime.fromisoformat(text)
    except ValueError:
        return None
    if attributes is not None and nesting_exceeds(attributes, MAX_ATTRIBUTES_DEPTH):
        return None
    # Positional: a named tuple built from keywords costs several times more.
    return Moment(event_id, channel_id, occurred_at, text, None, None, None, None, None, None, attributes)


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (`value` itself is level 1).

    Iterative: a document orjson accepts can nest deeper than Python's recursion limit.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def _decode_slowly(value: bytes) -> Any:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMoment("invalid_utf8", f"value is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidMoment("invalid_json", f"value is not JSON: {exc}") from None


def _describe(exc: schemas.ValidationError) -> str:
    """The validator's words, reworded where they would print a regex or a bare rule."""
    name, rule = exc.name, exc.rule
    if rule == "pattern" and name == "data.occurred_at":
        return "data.occurred_at must be RFC 3339 with an offset, e.g. 2024-05-01T20:15:00+08:00"
    if rule == "pattern" and name == "data.domain":
        return "data.domain must be a host name (letters, digits, dots and dashes)"
    if rule == "pattern":
        return f"{name} must not be blank or contain control characters"
    if name in ("data", "data.record_type") and "record_type" in str(exc.message):
        return "file_format aac needs record_type audio (the API records aac only as audio)"
    return str(exc.message)
