"""Highlight moments (highlight.moment): parsing, validation reasons, buckets, RFC 3339."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from highlight import recording, schemas
from highlight.apis import live_tape_start
from highlight.dedup import Entry, Phase, encode_entry, encode_key
from highlight.moment import (
    INVALID_REASONS,
    InvalidMoment,
    Moment,
    _parse_document,
    bucket_of,
    nesting_exceeds,
    parse_moment,
    parse_occurred_at,
    parse_rfc3339,
    plain_moment,
    validate_moment,
)
from highlight.results import STATUSES, result_document

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINIMAL: dict[str, Any] = {"event_id": "e-1", "channel_id": "8888_test123", "occurred_at": "2024-05-01T20:15:00+08:00"}
FULL: dict[str, Any] = {
    **MINIMAL,
    "duration_seconds": 600,
    "file_format": "mp4",
    "record_type": "video",
    "domain": "live.example.com",
    "path": "live/app",
    "mix_stream": 1,
    "attributes": {"team": "red", "score": [1, 2], "nested": {"x": None}},
}


_MISSING = object()


def _bytes(document: object) -> bytes:
    return orjson.dumps(document)


def _with(**changes: Any) -> bytes:
    document = dict(MINIMAL)
    for name, value in changes.items():
        if value is _MISSING:
            document.pop(name, None)
        else:
            document[name] = value
    return _bytes(document)


def _reason(value: bytes | None) -> str:
    with pytest.raises(InvalidMoment) as caught:
        parse_moment(value)
    assert str(caught.value)  # a message for people, always
    return caught.value.reason


# --- valid moments ----------------------------------------------------------------------------------


def test_minimal_moment_parses() -> None:
    moment = parse_moment(_bytes(MINIMAL))
    assert moment.event_id == "e-1"
    assert moment.channel_id == "8888_test123"
    assert moment.occurred_at == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    assert moment.occurred_at.utcoffset() == timedelta(hours=8)
    assert moment.occurred_at_text == "2024-05-01T20:15:00+08:00"
    assert moment.duration_seconds is None
    assert moment.file_format is None
    assert moment.record_type is None
    assert moment.domain is None
    assert moment.path is None
    assert moment.mix_stream is None
    assert moment.attributes is None


def test_full_moment_parses_every_field() -> None:
    moment = parse_moment(_bytes(FULL))
    assert moment.duration_seconds == 600
    assert moment.file_format == "mp4"
    assert moment.record_type == "video"
    assert moment.domain == "live.example.com"
    assert moment.path == "live/app"
    assert moment.mix_stream == 1
    assert moment.attributes == FULL["attributes"]


def test_recording_options_carry_the_moment_and_default_the_length() -> None:
    full = parse_moment(_bytes(FULL)).recording_options(300)
    assert full == recording.RecordingOptions("8888_test123", 600, "mp4", "video", "live.example.com", "live/app", 1)
    assert parse_moment(_bytes(MINIMAL)).recording_options(420).record_seconds == 420


def test_aac_with_record_type_audio_is_valid() -> None:
    moment = parse_moment(_with(file_format="aac", record_type="audio"))
    assert (moment.file_format, moment.record_type) == ("aac", "audio")


def test_duration_300_point_0_is_accepted_as_the_integer_300() -> None:
    moment = parse_moment(_with(duration_seconds=300.0))
    assert moment.duration_seconds == 300
    assert type(moment.duration_seconds) is int


def test_unknown_extra_fields_are_allowed() -> None:
    moment = parse_moment(_with(producer="scorer-7", version=3, extra={"a": [1]}))
    assert moment.event_id == "e-1"


@pytest.mark.parametrize("attributes", [{}, {"a": 1}, {"deep": {"er": [1, "two", None, True, 1.5]}}, {"ü": "🎥"}])
def test_attributes_are_passed_through_untouched(attributes: dict[str, Any]) -> None:
    assert parse_moment(_with(attributes=attributes)).attributes == attributes


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T12:15:00Z", "2024-05-01t12:15:00z", "2024-05-01T12:15:00.123456789Z", "2024-05-01T08:15:00-04:00"],
)
def test_occurred_at_accepts_every_rfc3339_offset_form(text: str) -> None:
    moment = parse_moment(_with(occurred_at=text))
    assert moment.occurred_at.replace(microsecond=0) == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    assert moment.occurred_at_text == text


def test_non_ascii_ids_are_kept_exactly() -> None:
    moment = parse_moment(_with(event_id="事件-🎯", channel_id="频道 a&b=c"))
    assert (moment.event_id, moment.channel_id) == ("事件-🎯", "频道 a&b=c")


# --- malformed moments, one reason each -----------------------------------------------------------


def test_none_value_is_empty_value() -> None:
    assert _reason(None) == "empty_value"


@pytest.mark.parametrize("value", [b"\xff", b'{"event_id": "\xc3\x28"}', b"\xed\xa0\x80", b"\x80abc"])
def test_non_utf8_is_invalid_utf8(value: bytes) -> None:
    assert _reason(value) == "invalid_utf8"


@pytest.mark.parametrize("value", [b"", b"{", b"{'a': 1}", b'{"a": NaN}', b"nope", b'{"a":1}}', b"   "])
def test_bad_json_is_invalid_json(value: bytes) -> None:
    assert _reason(value) == "invalid_json"


@pytest.mark.parametrize("value", [b"[]", b"[{}]", b'"text"', b"42", b"1.5", b"null", b"true"])
def test_json_that_is_not_an_object_is_not_an_object(value: bytes) -> None:
    assert _reason(value) == "not_an_object"


@pytest.mark.parametrize("field", ["event_id", "channel_id", "occurred_at"])
@pytest.mark.parametrize("value", [_MISSING, "", " ", "\t\n", None, 42, ["x"]])
def test_missing_empty_or_blank_required_fields_are_schema_violations(field: str, value: object) -> None:
    assert _reason(_with(**{field: value})) == "schema_violation"


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T20:15:00",  # no offset
        "2024-05-01 20:15:00+08:00",  # not RFC 3339 (space)
        "2024-05-01T20:15+08:00",  # no seconds
        "2024-05-01T20:15:00+0800",  # offset without colon
        "2024-05-01T20:15:00+08",
        "20240501T201500Z",
        "yesterday",
        "2024-13-01T20:15:00+08:00",  # month 13
        "2024-00-01T20:15:00+08:00",
        "2024-02-30T20:15:00+08:00",
        "2024-05-01T23:59:60Z",  # second 60
        "2024-05-01T24:00:00Z",
        "2024-05-01T20:60:00Z",
        "2024-05-01T20:15:00+24:00",
        "0000-01-01T00:00:00Z",
        "2024-05-01T20:15:00+08:00\n",
        "2024-05-01T20:15:00.Z",
        "\uff12\uff10\uff12\uff14-05-01T20:15:00Z",  # fullwidth digits
    ],
)
def test_bad_occurred_at_is_a_schema_violation(text: str) -> None:
    assert _reason(_with(occurred_at=text)) == "schema_violation"


@pytest.mark.parametrize("duration", [0, -5, "60", True, False, 1.5, None, [300], {"s": 300}])
def test_bad_duration_seconds_is_a_schema_violation(duration: object) -> None:
    assert _reason(_with(duration_seconds=duration)) == "schema_violation"


def test_aac_without_record_type_audio_is_a_schema_violation() -> None:
    assert _reason(_with(file_format="aac")) == "schema_violation"
    assert _reason(_with(file_format="aac", record_type="video")) == "schema_violation"


@pytest.mark.parametrize("mix_stream", [True, False, 2, -1, "1", 0.5])
def test_bad_mix_stream_is_a_schema_violation(mix_stream: object) -> None:
    assert _reason(_with(mix_stream=mix_stream)) == "schema_violation"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file_format", "wav"),
        ("file_format", "MP4"),
        ("record_type", "image"),
        ("domain", ""),
        ("path", ""),
        ("domain", 5),
        ("attributes", []),
        ("attributes", "x"),
        ("event_id", "x" * 1025),
        ("channel_id", "x" * 1025),
    ],
)
def test_other_bad_fields_are_schema_violations(field: str, value: object) -> None:
    assert _reason(_with(**{field: value})) == "schema_violation"


def test_priority_defaults_to_50_and_is_read_as_an_integer_from_0_to_100() -> None:
    assert parse_moment(_bytes(MINIMAL)).priority == 50
    assert parse_moment(_with(priority=0)).priority == 0
    high = parse_moment(_with(priority=100.0))
    assert (high.priority, type(high.priority)) == (100, int)


@pytest.mark.parametrize("priority", [-1, 101, 50.5, "80", True, None, [80]])
def test_bad_priority_is_a_schema_violation(priority: object) -> None:
    assert _reason(_with(priority=priority)) == "schema_violation"


def test_mix_stream_1_point_0_is_the_integer_1() -> None:
    moment = parse_moment(_with(mix_stream=1.0))
    assert type(moment.mix_stream) is int
    query = live_tape_start.query_string(
        "1", "k", moment.recording_options(300), recording.RecordingWindow("a", "b"), datetime.now(UTC)
    )
    assert parse_qs(query)["Param.n.mix_stream"] == ["1"]


# --- never anything but InvalidMoment -------------------------------------------------------------

no_surrogates = st.characters(blacklist_categories=("Cs",))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(no_surrogates, max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(no_surrogates, max_size=6), inner, max_size=3),
    max_leaves=8,
)
rfc3339ish = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 9999),
    st.integers(0, 14),
    st.integers(0, 32),
    st.sampled_from("Tt "),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".1234567891"]),
    st.sampled_from(["Z", "z", "", "+08:00", "-23:59", "+24:00", "+00:60", "+0800", "-00:00"]),
)
FIELDS = (
    "event_id",
    "channel_id",
    "occurred_at",
    "duration_seconds",
    "file_format",
    "record_type",
    "domain",
    "path",
    "mix_stream",
    "attributes",
)
field_values = (
    json_values
    | rfc3339ish
    | st.sampled_from(["flv", "hls", "mp4", "aac", "video", "audio", 0, 1, 1.0, 300.0, 1e300, "x"])
    | st.integers(-(2**63), 2**64 - 1)
)
moment_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(FIELDS, field_values) | {"extra": json_values},
)


def _parse_or_invalid(value: bytes | None) -> Moment | None:
    try:
        return parse_moment(value)
    except InvalidMoment as exc:
        reason = exc.reason
    assert reason in set(INVALID_REASONS) - {"too_large"}, "no size limit was given"
    return None


# One input per reason: the list `highlight dlq replay --reason` accepts is exactly what parsing gives (and
# `unprocessable`, tests/test_dead_letters.py).
REASON_EXAMPLES: dict[str, bytes | None] = {
    "empty_value": None,
    "too_large": b'{"event_id": "e", "channel_id": "c", "occurred_at": "2024-05-01T20:15:00+08:00"}',
    "invalid_utf8": b"\xff\xfe",
    "invalid_json": b"{not json",
    "not_an_object": b"[1, 2]",
    "schema_violation": b'{"event_id": "e"}',
}


def test_every_invalid_moment_reason_is_given_for_some_record_and_no_other_is() -> None:
    assert set(REASON_EXAMPLES) == set(INVALID_REASONS)
    for reason, value in REASON_EXAMPLES.items():
        with pytest.raises(InvalidMoment) as caught:
            parse_moment(value, max_bytes=32)
        assert caught.value.reason == reason


@given(st.binary(max_size=300))
def test_parse_moment_on_arbitrary_bytes_raises_only_invalid_moment(value: bytes) -> None:
    _parse_or_invalid(value)


@given(json_values)
def test_parse_moment_on_arbitrary_json_raises_only_invalid_moment(document: object) -> None:
    _parse_or_invalid(orjson.dumps(document))


@given(moment_like)
def test_parse_moment_on_moment_shaped_dicts_raises_only_invalid_moment(document: dict[str, Any]) -> None:
    moment = _parse_or_invalid(orjson.dumps(document))
    if moment is not None:
        assert moment.occurred_at.tzinfo is not None
        assert moment.duration_seconds is None or moment.duration_seconds >= 1
        bucket_of(moment.occurred_at, 300)  # every accepted moment has a bucket


@given(
    st.fixed_dictionaries(
        {
            "event_id": st.text(no_surrogates, min_size=1, max_size=30),
            "channel_id": st.text(no_surrogates, min_size=1, max_size=30),
            "occurred_at": rfc3339ish,
        },
        optional=dict.fromkeys(FIELDS[3:], field_values),
    )
)
def test_parse_moment_on_nearly_valid_moments_raises_only_invalid_moment(document: dict[str, Any]) -> None:
    moment = _parse_or_invalid(orjson.dumps(document))
    if moment is not None:
        assert moment.event_id == document["event_id"]
        assert moment.channel_id == document["channel_id"]
        assert moment.occurred_at_text == document["occurred_at"]


# --- buckets --------------------------------------------------------------------------------------

fixed_offsets = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 -- hypothesis bounds are naive
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=fixed_offsets,
)


@given(aware_datetimes, st.integers(min_value=1, max_value=10**7))
def test_bucket_of_is_floor_of_epoch_over_size(instant: datetime, size: int) -> None:
    micros = (instant - EPOCH) // timedelta(microseconds=1)
    assert bucket_of(instant, size) == micros // (size * 1_000_000)


@given(aware_datetimes, fixed_offsets, st.integers(min_value=1, max_value=86_400))
def test_bucket_of_is_the_same_for_the_same_instant_in_any_offset(
    instant: datetime, other: timezone, size: int
) -> None:
    assert bucket_of(instant.astimezone(other), size) == bucket_of(instant, size)


@pytest.mark.parametrize("size", [1, 60, 300, 3600, 7])
def test_an_instant_exactly_on_a_boundary_belongs_to_the_new_bucket(size: int) -> None:
    boundary = EPOCH + timedelta(seconds=size * 5_712_345)
    assert bucket_of(boundary, size) == 5_712_345
    assert bucket_of(boundary - timedelta(microseconds=1), size) == 5_712_344
    assert bucket_of(boundary + timedelta(seconds=size) - timedelta(microseconds=1), size) == 5_712_345


def test_a_boundary_given_in_another_offset_belongs_to_the_new_bucket() -> None:
    # 2024-05-01T12:15:00Z is a multiple of 300 s; +08:00 and -10:00 spell the same instant.
    for text in ("2024-05-01T12:15:00Z", "2024-05-01T20:15:00+08:00", "2024-05-01T02:15:00-10:00"):
        assert bucket_of(parse_rfc3339(text), 300) == 1714565700 // 300
    assert bucket_of(parse_rfc3339("2024-05-01T20:14:59.999999+08:00"), 300) == 1714565700 // 300 - 1


def test_bucket_of_floors_before_the_epoch() -> None:
    assert bucket_of(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), 300) == -1
    assert bucket_of(datetime(1969, 12, 31, 23, 55, 0, tzinfo=UTC), 300) == -1
    assert bucket_of(datetime(1969, 12, 31, 23, 54, 59, 999999, tzinfo=UTC), 300) == -2


def test_moment_bucket_uses_its_occurred_at() -> None:
    assert parse_moment(_bytes(MINIMAL)).bucket(300) == 1714565700 // 300


# --- RFC 3339 -------------------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1, 1, 1), timezones=fixed_offsets | st.just(UTC)))  # noqa: DTZ001
def test_parse_rfc3339_round_trips_isoformat(instant: datetime) -> None:
    parsed = parse_rfc3339(instant.isoformat())
    assert parsed == instant
    assert parsed.utcoffset() == instant.utcoffset()


@pytest.mark.parametrize("text", ["2024-05-01T12:15:00Z", "2024-05-01T12:15:00z", "2024-05-01t12:15:00Z"])
def test_parse_rfc3339_accepts_z_in_either_case(text: str) -> None:
    assert parse_rfc3339(text) == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    assert parse_rfc3339(text).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("fraction", "micro"),
    [("1", 100_000), ("123456", 123_456), ("1234567", 123_456), ("999999999", 999_999), ("000000001", 0)],
)
def test_parse_rfc3339_accepts_any_fraction_length(fraction: str, micro: int) -> None:
    assert parse_rfc3339(f"2024-05-01T12:15:00.{fraction}Z").microsecond == micro


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:15:00",
        "2024-05-01T12:15:00+08",
        "2024-05-01T12:15:00+24:00",
        "2024-05-01T12:15:00+05:60",
        "2024-05-01T12:15:00Z ",
        " 2024-05-01T12:15:00Z",
        "2024-05-01 12:15:00Z",
        "2024-13-01T12:15:00Z",
    ],
)
def test_parse_rfc3339_rejects_what_rfc3339_does_not_allow(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the contract is ValueError
        parse_rfc3339(text)


@pytest.mark.parametrize(
    "text",
    [
        "\uff12\uff10\uff12\uff14-05-01T12:15:00Z",  # fullwidth
        "\u0662\u0660\u0662\u0664-\u0660\u0665-\u0660\u0661T12:15:00Z",  # Arabic-Indic
        "2024-05-01T12:15:00+\u0660\u0668:00",
    ],
)
def test_parse_rfc3339_rejects_non_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_rfc3339(text)


# --- hostile input: limits, and whatever parses can be answered ---------------------------------------


def _nested(depth: int, leaf: str = "1") -> str:
    """`attributes` nested `depth` levels deep (itself the first), as JSON text, alternating objects and arrays."""
    text = leaf
    for level in range(depth - 1, 0, -1):
        text = f'{{"k": {text}}}' if level % 2 else f"[{text}]"
    return f'{{"a": {text}}}' if depth > 1 else "{}"


def _with_attributes(text: str) -> bytes:
    return b'{"event_id": "e", "channel_id": "c", "occurred_at": "2024-05-01T20:15:00+08:00", "attributes": ' + (
        text.encode() + b"}"
    )


def test_attributes_nested_64_levels_pass_through_and_their_result_encodes() -> None:
    moment = parse_moment(_with_attributes(_nested(64)))
    assert moment.attributes is not None
    document = result_document(moment, 1, 300, "expired", None, datetime.now(UTC))
    assert orjson.loads(orjson.dumps(document))["attributes"] == moment.attributes


@pytest.mark.parametrize("depth", [65, 254, 255, 1000])
def test_attributes_nested_deeper_than_64_levels_are_a_schema_violation_before_any_call(depth: int) -> None:
    # 254 and more is what stopped the service for good: orjson reads up to 1,024 levels but writes 254.
    with pytest.raises(InvalidMoment) as caught:
        parse_moment(_with_attributes(_nested(depth)))
    assert caught.value.reason == "schema_violation"
    assert "attributes is nested more than 64 levels deep" in str(caught.value)


def test_nesting_beyond_what_orjson_reads_is_invalid_json() -> None:
    assert _reason(_with_attributes(_nested(1100))) == "invalid_json"


def test_nesting_exceeds_counts_containers_only_and_survives_any_depth_orjson_reads() -> None:
    assert not nesting_exceeds({"a": 1, "b": "x"}, 1)
    assert nesting_exceeds({"a": []}, 1)
    assert not nesting_exceeds({"a": []}, 2)
    assert nesting_exceeds(orjson.loads("[" * 1024 + "]" * 1024), 1023)  # no RecursionError


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "invalid_json"),
        ("-NaN", "invalid_json"),
        ("Infinity", "invalid_json"),
        ("-Infinity", "invalid_json"),
        ("1e400", "invalid_json"),
        ('"\\ud800"', "invalid_json"),  # a lone surrogate, escaped
        ('"\\udc00 low first"', "invalid_json"),
    ],
)
def test_values_json_cannot_carry_are_invalid_json_in_any_field(text: str, reason: str) -> None:
    for field in ("event_id", "channel_id", "attributes", "duration_seconds", "extra"):
        value = f'{{"x": {text}}}' if field == "attributes" else text
        fields = {"event_id": '"e"', "channel_id": '"c"', "occurred_at": '"2024-05-01T20:15:00Z"', field: value}
        raw = "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"
        assert _reason(raw.encode()) == reason, (field, text)


def test_an_encoded_surrogate_in_the_bytes_is_invalid_utf8() -> None:
    assert _reason(b'{"event_id": "e", "channel_id": "\xed\xa0\x80", "occurred_at": "2024-05-01T20:15:00Z"}') == (
        "invalid_utf8"
    )


def test_integers_beyond_64_bits_in_attributes_arrive_as_the_nearest_double() -> None:
    moment = parse_moment(_with_attributes('{"big": 18446744073709551616, "small": -9223372036854775809}'))
    assert moment.attributes == {"big": 2.0**64, "small": -(2.0**63)}
    assert orjson.loads(orjson.dumps(moment.attributes)) == moment.attributes


def test_many_keys_and_long_strings_within_the_size_limit_parse_and_encode() -> None:
    attributes = {f"k{i}": "v" * 5 for i in range(2500)} | {"long": "x" * 20_000}
    moment = parse_moment(_with_attributes(orjson.dumps(attributes).decode()), max_bytes=65536)
    assert moment.attributes == attributes
    assert orjson.dumps(result_document(moment, 1, 300, "expired", None, datetime.now(UTC)))


# Raw JSON texts, not Python values: big integer literals, NaN spellings, escaped lone surrogates and nesting
# deeper than Python's recursion limit are exactly what a Python value cannot express.
def _json_string(text: str) -> str:
    return json.dumps(text)  # ASCII escapes: a lone surrogate becomes \udXXX


valid_scalar_texts = st.one_of(
    st.sampled_from(
        [
            *("null", "true", "false", "1e-400", "-0", "1E2", "0.1e1", "300.0", "1.0", "9" * 400),
            *("18446744073709551616", "18446744073709551615", "-9223372036854775809", "1e308"),
            *('"\\ud83d\\ude00"', '"\\u0000"', '"\\ufeff"', '"\\u2028"', '"\\u007f"', '"' + "x" * 5000 + '"'),
        ]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(_json_string),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(lambda t: json.dumps(t, ensure_ascii=False)),
)
# What JSON cannot carry: refused as invalid_json wherever it appears.
hostile_scalar_texts = st.sampled_from(
    ["NaN", "-NaN", "Infinity", "-Infinity", "inf", "1e400", '"\\ud800"', '"\\udfff x"', '"\\udc00\\ud800"']
) | st.text(max_size=12).map(_json_string)
scalar_texts = st.one_of(valid_scalar_texts, valid_scalar_texts, valid_scalar_texts, hostile_scalar_texts)


def _containers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    arrays = st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    objects = st.lists(st.tuples(st.text(max_size=6).map(_json_string), inner), max_size=4).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
    )
    return arrays | objects


json_texts = st.recursive(scalar_texts, _containers, max_leaves=10)
valid_json_texts = st.recursive(valid_scalar_texts, _containers, max_leaves=20)
deep_texts = st.tuples(st.integers(1, 1100) | st.integers(55, 70), st.sampled_from(["[]", "{}"])).map(
    lambda nd: (nd[1][0] if nd[1] == "[]" else '{"k":') * nd[0] + "1" + (nd[1][1] if nd[1] == "[]" else "}") * nd[0]
)


def _mostly(valid: str, other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), other)


field_texts = {
    "event_id": _mostly('"e-1"', scalar_texts),
    "channel_id": _mostly('"ch-1"', scalar_texts),
    "occurred_at": _mostly('"2024-05-01T20:15:00+08:00"', scalar_texts),
    "duration_seconds": scalar_texts,
    "mix_stream": scalar_texts,
    "attributes": st.one_of(valid_json_texts, json_texts, deep_texts).map(lambda text: '{"a":' + text + "}"),
    "extra": json_texts | deep_texts,
}
moment_texts = st.fixed_dictionaries(
    {name: field_texts[name] for name in ("event_id", "channel_id", "occurred_at")},
    optional={name: field_texts[name] for name in ("duration_seconds", "mix_stream", "attributes", "extra")},
).map(lambda fields: "{" + ",".join(f'"{name}":{text}' for name, text in fields.items()) + "}")


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(moment_texts)
def test_whatever_parses_can_be_answered_and_stored(text: str) -> None:
    """The parser's promise to the rest of the pipeline: a parsed moment never fails to encode, anywhere."""
    moment = _parse_or_invalid(text.encode("utf-8", "surrogatepass"))
    if moment is None:
        return
    for value in (moment.event_id, moment.channel_id, moment.occurred_at_text):
        value.encode()  # strict UTF-8: what Kafka keys, logs and the API call need
    bucket = moment.bucket(300)
    encode_key((moment.channel_id, bucket))
    for status in STATUSES:
        entry = Entry(Phase.STARTED, moment.event_id, "2024-05-01 20:15:00", "2024-05-01 20:20:00", task_id="1")
        document = result_document(moment, bucket, 300, status, entry, datetime.now(UTC))
        encoded = orjson.dumps(document)  # the plain encoder: the fallback is never needed
        assert "dropped" not in orjson.loads(encoded)
        schemas.validator(schemas.RESULT_SCHEMA)(orjson.loads(encoded))
        encode_entry(entry)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_json_texts, json_texts, deep_texts))
def test_whatever_attributes_parse_reach_the_result_unchanged(text: str) -> None:
    moment = _parse_or_invalid(_with_attributes('{"a":' + text + "}"))
    if moment is None:
        return
    document = result_document(moment, 1, 300, "started", None, datetime.now(UTC))
    assert orjson.loads(orjson.dumps(document))["attributes"] == moment.attributes


# --- the fast paths agree with the strict ones -------------------------------------------------------

RFC3339_SHAPED = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"


def _outcome(parse: Any, text: str) -> object:
    try:
        parsed = parse(text)
    except (ValueError, OverflowError):
        return "refused"
    return parsed, parsed.utcoffset()


@settings(max_examples=500)
@given(st.from_regex(RFC3339_SHAPED, fullmatch=True) | st.text(max_size=40))
def test_parse_occurred_at_agrees_with_parse_rfc3339_on_any_text(text: str) -> None:
    assert _outcome(parse_occurred_at, text) == _outcome(parse_rfc3339, text)


_field_text = (
    st.text(max_size=6)
    | st.sampled_from(["", " ", "\t", "a\u0000b", "x\n", "\u3000", "chan-1", "频道", "a" * 1025, "b" * 257])
    | st.from_regex(RFC3339_SHAPED, fullmatch=True)
)
_moment_shaped = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _field_text | st.integers(),
        "channel_id": _field_text | st.none(),
        "occurred_at": _field_text | st.sampled_from(["2024-02-30T10:00:00Z", "2024-05-01T24:00:00Z"]),
        "attributes": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2) | st.lists(st.none()),
        "duration_seconds": st.integers(-1, 2) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans(),
        "file_format": st.sampled_from(["aac", "mp4", "wav"]),
        "record_type": st.sampled_from(["audio", "video", 1]),
        "domain": _field_text,
        "path": _field_text,
        "mix_stream": st.integers(-1, 2) | st.booleans(),
        "extra": st.integers(),
    },
)


def _verdict(validate: Any, document: dict[str, Any]) -> object:
    try:
        validate(document)
    except schemas.ValidationError as exc:
        return exc.name, exc.rule
    return "valid"


@settings(max_examples=800)
@given(_moment_shaped)
def test_validate_moment_gives_the_published_schemas_verdict(document: dict[str, Any]) -> None:
    full = schemas.validator(schemas.MOMENT_SCHEMA)
    assert _verdict(validate_moment, document) == _verdict(full, document)


# --- the plain fast path: the strict path's moment, or nothing -------------------------------------

# Characters at the edges of the schema's patterns: controls (C0, DEL, C1), whitespace the regex engine knows
# (ASCII, NEL, no-break, ideographic, line separator), a format character, non-ASCII digits.
_EDGE_CHARACTERS = ["\x00", "\t", "\n", "\x1f", " ", "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b", "٣", "频"]
_hostile_text = st.text(st.sampled_from(_EDGE_CHARACTERS) | st.characters(blacklist_categories=("Cs",)), max_size=8)
_id_text = (
    _hostile_text
    | st.sampled_from(["d-7", "dup-17", "8888_test123", "频道", "a b"])
    | st.sampled_from([255, 256, 257, 1023, 1024, 1025]).map(lambda n: "x" * n)
)
_digits = st.sampled_from(["0", "1", "2", "3", "5", "9", "٣"])
_times = st.builds(
    "{}{}{}{}-{}{}-{}{}{}{}{}:{}{}:{}{}{}{}".format,
    *[_digits] * 8,
    st.sampled_from("Tt "),
    *[_digits] * 6,
    st.sampled_from(["", ".", ".5", ".123", ".123456", ".1234567", ".٣"]),
    st.sampled_from(
        [
            "Z",
            "z",
            "",
            "+08:00",
            "-23:59",
            "+24:00",
            "+23:60",
            "+00:60",
            "-05:99",
            "+00:59",
            "-00:00",
            "+0800",
            "+08:0٣",
        ]
    ),
)
_valid_times = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 -- given a fixed offset below
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC) | st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes))),
).map(lambda instant: instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
_int64 = st.integers(-(2**63), 2**63 - 1)
_plain_shaped = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _id_text | _int64 | st.none(),
        "channel_id": _id_text | st.lists(st.text(max_size=2), max_size=1),
        "occurred_at": _times | _valid_times | st.from_regex(RFC3339_SHAPED, fullmatch=True) | _int64,
        "attributes": st.none() | st.text(max_size=2) | json_values | st.dictionaries(st.text(max_size=3), json_values),
        "priority": st.integers(-1, 101),
        "extra": _int64,
    },
)


def _same_moment(fast: Moment, strict: Moment) -> bool:
    """Equal field for field, in type too (a datetime's offset, an int that is not a bool)."""
    return (
        fast == strict
        and [type(value) for value in fast] == [type(value) for value in strict]
        and fast.occurred_at.utcoffset() == strict.occurred_at.utcoffset()
        and fast.occurred_at.tzinfo == strict.occurred_at.tzinfo
    )


def _strict_outcome(document: dict[str, Any]) -> object:
    try:
        return _parse_document(document)
    except InvalidMoment as exc:
        return exc.reason, str(exc)


@settings(max_examples=2000)
@given(_plain_shaped)
def test_the_plain_fast_path_gives_the_strict_paths_moment_or_nothing(document: dict[str, Any]) -> None:
    fast = plain_moment(document)
    strict = _strict_outcome(document)
    if fast is not None:
        # Never a moment the published schema (whole, not the plain subset) refuses, and the same moment.
        schemas.validator(schemas.MOMENT_SCHEMA)(document)
        assert isinstance(strict, Moment)
        assert _same_moment(fast, strict)
    # Through the bytes, parse_moment answers as the strict path does: the same moment or the same refusal.
    parsed = _strict_outcome_of_bytes(orjson.dumps(document))
    if isinstance(strict, Moment):
        assert isinstance(parsed, Moment)
        assert _same_moment(parsed, strict)
    else:
        assert parsed == strict


def _strict_outcome_of_bytes(value: bytes) -> object:
    try:
        return parse_moment(value)
    except InvalidMoment as exc:
        return exc.reason, str(exc)


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    _valid_times,
    st.none() | st.dictionaries(st.text(max_size=3), json_values, max_size=3),
)
def test_the_common_moment_takes_the_plain_fast_path(
    event_id: str, channel_id: str, occurred_at: str, attributes: dict[str, Any] | None
) -> None:
    document: dict[str, Any] = {"event_id": event_id, "channel_id": channel_id, "occurred_at": occurred_at}
    if attributes is not None:
        document["attributes"] = attributes
    fast = plain_moment(document)
    assert fast is not None
    assert _same_moment(fast, _parse_document(document))


@pytest.mark.parametrize(
    "changes",
    [
        {"event_id": " \u3000"},
        {"channel_id": "a\nb"},
        {"channel_id": "x\n"},
        {"channel_id": "c" * 257},
        {"event_id": "e" * 1025},
        {"occurred_at": "2024-05-01 20:15:00Z"},
        {"occurred_at": "2023-02-29T20:15:00Z"},
        {"occurred_at": "2024-05-01T20:15:00+23:60"},
        {"occurred_at": "2024-05-01T20:15:00+00:60"},
        {"occurred_at": "2024-05-01T20:15:00.1234567Z"},
        {"attributes": []},
        {"priority": 50},
        {"file_format": "aac"},
    ],
)
def test_anything_but_the_common_plain_moment_takes_the_strict_path(changes: dict[str, Any]) -> None:
    assert plain_moment({**MINIMAL, **changes}) is None


@given(st.lists(st.tuples(aware_datetimes, st.sampled_from([1, 60, 300, 301, 86_400])), min_size=1, max_size=6))
def test_a_moments_bucket_is_bucket_of_its_instant_however_often_and_in_whatever_order_it_is_asked(
    asked: list[tuple[datetime, int]],
) -> None:
    moments = [Moment("e", "c", instant, instant.isoformat()) for instant, _ in asked]
    for _ in range(2):
        for moment, (instant, size) in zip(moments, asked, strict=True):
            for other in (size, 300, size):
                assert moment.bucket(other) == bucket_of(instant, other)
