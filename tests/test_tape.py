"""The Live_Tape_Start protocol rules (highlight.tape): pure, no network."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import tape
from highlight.errors import LiveAccessRefused, LiveError, LiveInDoubt, LiveRefused, LiveUnreachable
from highlight.tape import TapeOptions, TapeWindow

APPID = "1234"
KEY = "5d41402abc4b2a76b9719d911017c592"
NOW = datetime(2024, 5, 1, 12, 15, 0, tzinfo=UTC)  # 20:15:00 in China Standard Time

# Channel ids as JSON can carry them: any text but lone surrogates (orjson refuses those).
channel_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)


def _query(options: TapeOptions, now: datetime = NOW) -> dict[str, list[str]]:
    text = tape.query_string(APPID, KEY, options, tape.window_at(now, options.record_seconds), now)
    return parse_qs(text, keep_blank_values=True, strict_parsing=True)


def _reply(document: object) -> bytes:
    return orjson.dumps(document)


# --- signing --------------------------------------------------------------------------------------


def test_sign_matches_the_documented_vector() -> None:
    assert tape.sign("5d41402abc4b2a76b9719d911017c592", 1471850187) == "b17971b51ba0fe5916ddcd96692e9fb3"


def test_sign_is_md5_of_key_then_decimal_t() -> None:
    assert tape.sign("abc", 42) == hashlib.md5(b"abc42", usedforsecurity=False).hexdigest()


# --- China Standard Time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (datetime(2024, 5, 1, 12, 15, 0, tzinfo=UTC), "2024-05-01 20:15:00"),
        (datetime(2024, 5, 2, 2, 15, 0, tzinfo=timezone(timedelta(hours=14))), "2024-05-01 20:15:00"),
        (datetime(2024, 5, 1, 2, 15, 0, tzinfo=timezone(timedelta(hours=-10))), "2024-05-01 20:15:00"),
        # New York in summer (EDT, UTC-4) and in winter (EST, UTC-5).
        (datetime(2024, 7, 1, 8, 0, 0, tzinfo=ZoneInfo("America/New_York")), "2024-07-01 20:00:00"),
        (datetime(2024, 1, 15, 7, 0, 0, tzinfo=ZoneInfo("America/New_York")), "2024-01-15 20:00:00"),
        # Both sides of Europe's spring-forward (2024-03-31 01:00 UTC).
        (datetime(2024, 3, 31, 1, 59, 59, tzinfo=ZoneInfo("Europe/Berlin")), "2024-03-31 08:59:59"),
        (datetime(2024, 3, 31, 3, 0, 0, tzinfo=ZoneInfo("Europe/Berlin")), "2024-03-31 09:00:00"),
        # An ambiguous wall time in the autumn fold, each side.
        (datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=0), "2024-11-03 13:30:00"),
        (datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1), "2024-11-03 14:30:00"),
        # Crossing midnight and a year boundary in CST.
        (datetime(2023, 12, 31, 16, 0, 0, tzinfo=UTC), "2024-01-01 00:00:00"),
    ],
)
def test_format_cst_gives_china_standard_time_for_aware_datetimes_in_any_zone(instant: datetime, expected: str) -> None:
    assert tape.format_cst(instant) == expected


def test_format_cst_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        tape.format_cst(datetime(2024, 5, 1, 12, 0, 0))  # noqa: DTZ001 -- the point of the test


@pytest.mark.parametrize(
    ("host_zone", "host_offset"),
    [("America/New_York", -5 * 3600), ("Europe/London", 0), ("Pacific/Kiritimati", 14 * 3600), ("UTC", 0)],
)
def test_format_cst_does_not_depend_on_the_host_timezone(
    monkeypatch: pytest.MonkeyPatch, host_zone: str, host_offset: int
) -> None:
    monkeypatch.setenv("TZ", host_zone)
    time.tzset()
    try:
        assert time.localtime(1705320000).tm_gmtoff == host_offset  # the host zone really changed
        assert tape.format_cst(datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)) == "2024-01-15 20:00:00"
        window = tape.window_at(datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC), 300)
        assert window == TapeWindow("2024-07-01 20:00:00", "2024-07-01 20:05:00")
    finally:
        monkeypatch.undo()
        time.tzset()


# China has had no DST since 1991: from 1992 on, CST is UTC+8 exactly.
aware_datetimes = st.datetimes(
    min_value=datetime(1992, 1, 2),  # noqa: DTZ001 -- hypothesis bounds are naive
    max_value=datetime(9000, 1, 1),  # noqa: DTZ001
    timezones=st.timezones(),
    allow_imaginary=False,
)


@given(aware_datetimes)
def test_format_cst_always_equals_the_utc_instant_plus_eight_hours(instant: datetime) -> None:
    expected = instant.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=8)
    text = tape.format_cst(instant)
    assert text == expected.strftime("%Y-%m-%d %H:%M:%S")
    assert tape.parse_cst(text).timestamp() == instant.replace(microsecond=0).timestamp()


# --- clamping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requested", "clamped"), [(60, 300), (7200, 1800), (900, 900), (300, 300), (1800, 1800)])
def test_clamp_record_seconds_keeps_real_time_recordings_between_5_and_30_minutes(requested: int, clamped: int) -> None:
    assert tape.clamp_record_seconds(requested) == clamped


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_clamp_record_seconds_is_always_within_bounds_and_identity_inside(requested: int) -> None:
    result = tape.clamp_record_seconds(requested)
    assert 300 <= result <= 1800
    if 300 <= requested <= 1800:
        assert result == requested


fixed_offset_datetimes = st.datetimes(
    min_value=datetime(1992, 1, 2),  # noqa: DTZ001 -- hypothesis bounds are naive
    max_value=datetime(9000, 1, 1),  # noqa: DTZ001
    timezones=st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes))),
)


@given(st.integers(min_value=1, max_value=10**6), fixed_offset_datetimes)
def test_window_at_spans_exactly_the_clamped_length_from_now(record_seconds: int, now: datetime) -> None:
    window = tape.window_at(now, record_seconds)
    start, end = tape.parse_cst(window.start_time), tape.parse_cst(window.end_time)
    assert (end - start).total_seconds() == tape.clamp_record_seconds(record_seconds)
    assert window.start_time == tape.format_cst(now)


@pytest.mark.parametrize("record_seconds", [300, 900, 1800])
def test_window_at_in_utc_spans_exactly_the_clamped_length(record_seconds: int) -> None:
    window = tape.window_at(NOW, record_seconds)
    assert window.start_time == "2024-05-01 20:15:00"
    assert tape.parse_cst(window.end_time) - tape.parse_cst(window.start_time) == timedelta(seconds=record_seconds)


@pytest.mark.parametrize(
    ("now", "record_seconds", "end_time"),
    [
        # 01:50 EDT (05:50 UTC) + 30 min = 06:20 UTC = 14:20 CST; wall-clock arithmetic lands on 02:20 EST (15:20 CST).
        (datetime(2024, 11, 3, 1, 50, tzinfo=ZoneInfo("America/New_York")), 1800, "2024-11-03 14:20:00"),
        # 01:00 EST, the second 01:00 (06:00 UTC) + 5 min = 14:05 CST; the sum loses fold=1 and lands at 13:05 CST.
        (datetime(2024, 11, 3, 1, 0, tzinfo=ZoneInfo("America/New_York"), fold=1), 300, "2024-11-03 14:05:00"),
    ],
)
def test_window_at_spans_the_clamped_length_across_a_dst_fold(
    now: datetime, record_seconds: int, end_time: str
) -> None:
    window = tape.window_at(now, record_seconds)
    assert window.end_time == end_time
    assert tape.parse_cst(window.end_time) - tape.parse_cst(window.start_time) == timedelta(seconds=record_seconds)


# --- the query --------------------------------------------------------------------------------------


def test_query_string_has_the_documented_parameters_and_encoding() -> None:
    text = tape.query_string(
        APPID, KEY, TapeOptions("8888_test123", 300), TapeWindow("2017-05-20 10:00:00", "2017-05-20 10:30:00"), NOW
    )
    assert "Param.s.start_time=2017-05-20+10%3A00%3A00" in text.split("&")
    assert "Param.s.end_time=2017-05-20+10%3A30%3A00" in text.split("&")
    assert "Param.n.task_sub_type=1" in text.split("&")
    assert "interface=Live_Tape_Start" in text.split("&")
    assert "appid=1234" in text.split("&")
    assert "Param.s.channel_id=8888_test123" in text.split("&")


def test_query_string_t_is_the_expiry_now_plus_60_and_sign_is_md5_of_key_plus_t() -> None:
    query = _query(TapeOptions("8888_test123", 300), NOW.replace(microsecond=999_999))
    t = int(NOW.timestamp()) + 60
    assert query["t"] == [str(t)]
    assert query["sign"] == [hashlib.md5(f"{KEY}{t}".encode(), usedforsecurity=False).hexdigest()]


def test_query_string_omits_optional_fields_when_unset() -> None:
    query = _query(TapeOptions("c", 300))
    assert set(query) == {
        "appid",
        "interface",
        "Param.s.channel_id",
        "Param.s.start_time",
        "Param.s.end_time",
        "Param.n.task_sub_type",
        "t",
        "sign",
    }
    assert all(len(values) == 1 for values in query.values())


def test_query_string_includes_each_optional_field_when_set() -> None:
    options = TapeOptions("c", 600, file_format="aac", record_type="audio", domain="a.b.c", path="live/x", mix_stream=1)
    query = _query(options)
    assert query["Param.s.file_format"] == ["aac"]
    assert query["Param.s.record_type"] == ["audio"]
    assert query["Param.s.domain"] == ["a.b.c"]
    assert query["Param.s.path"] == ["live/x"]
    assert query["Param.n.mix_stream"] == ["1"]
    assert query["Param.n.task_sub_type"] == ["1"]


def test_query_string_sends_mix_stream_zero_when_set_to_zero() -> None:
    assert _query(TapeOptions("c", 300, mix_stream=0))["Param.n.mix_stream"] == ["0"]


def test_query_string_times_are_the_window_in_cst() -> None:
    query = _query(TapeOptions("c", 7200))
    assert query["Param.s.start_time"] == ["2024-05-01 20:15:00"]
    assert query["Param.s.end_time"] == ["2024-05-01 20:45:00"]


@pytest.mark.parametrize(
    "channel_id",
    ["a&b=c", "x+y", "100%", "path/to", "with space", "a=b&c=d+e%20f/g h", "直播频道", "🎥🔥", "é\u0301", "#frag?q"],
)
def test_query_string_carries_tricky_channel_ids_intact(channel_id: str) -> None:
    query = _query(TapeOptions(channel_id, 300))
    assert query["Param.s.channel_id"] == [channel_id]
    assert query["appid"] == [APPID]  # no parameter was split or swallowed


@given(channel_text)
def test_query_string_round_trips_any_channel_id_through_parse_qs(channel_id: str) -> None:
    query = _query(TapeOptions(channel_id, 300))
    assert query["Param.s.channel_id"] == [channel_id]
    assert query["Param.n.task_sub_type"] == ["1"]


# --- the reply --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [0, 1, 2**53 + 1, 18446744073709551615])
def test_parse_reply_keeps_the_64_bit_task_id_exactly(task_id: int) -> None:
    body = b'{"ret":0,"retcode":0,"message":"","output":{"task_id":%d}}' % task_id
    result = tape.parse_reply(200, body)
    assert result == task_id
    assert type(result) is int


def test_parse_reply_accepts_the_task_id_as_a_digit_string() -> None:
    assert tape.parse_reply(200, _reply({"ret": 0, "output": {"task_id": "18446744073709551615"}})) == 2**64 - 1


@pytest.mark.parametrize(
    "body",
    [
        {"ret": 0},
        {"ret": 0, "output": {}},
        {"ret": 0, "output": []},
        {"ret": 0, "output": {"task_id": None}},
        {"ret": 0, "output": {"task_id": -1}},
        {"ret": 0, "output": {"task_id": 1.5}},
        {"ret": 0, "output": {"task_id": True}},
        {"ret": 0, "output": {"task_id": "12a"}},
        {"ret": 0, "output": {"task_id": ""}},
    ],
)
def test_parse_reply_ret_0_without_a_valid_task_id_is_in_doubt(body: object) -> None:
    with pytest.raises(LiveInDoubt):
        tape.parse_reply(200, _reply(body))


def test_parse_reply_task_id_above_64_bits_is_in_doubt() -> None:
    with pytest.raises(LiveInDoubt):
        tape.parse_reply(200, b'{"ret":0,"output":{"task_id":"18446744073709551616"}}')


def test_parse_reply_ret_1202_is_refused_and_retriable() -> None:
    with pytest.raises(LiveRefused) as caught:
        tape.parse_reply(200, _reply({"ret": 1202, "message": "request frequency exceeds limit"}))
    assert caught.value.retriable is True
    assert caught.value.code == "1202"
    assert caught.value.code == "1202"


@pytest.mark.parametrize("ret", [1301, 1204, 20601, 1201, -1])
def test_parse_reply_other_rets_are_refused_not_retriable_with_code_str_ret(ret: int) -> None:
    with pytest.raises(LiveRefused) as caught:
        tape.parse_reply(200, _reply({"ret": ret, "message": "has not live stream"}))
    assert caught.value.retriable is False
    assert caught.value.code == str(ret)
    assert "has not live stream" in caught.value.message


def test_parse_reply_refusal_without_a_message_still_names_the_ret() -> None:
    with pytest.raises(LiveRefused) as caught:
        tape.parse_reply(200, _reply({"ret": 20601}))
    assert "20601" in caught.value.message


@pytest.mark.parametrize("message", ["appid is invalid", "sign invalid", "time expired", "Sign Invalid!"])
@pytest.mark.parametrize("ret", [-1, 1, 1202, 1204, 4100])
@pytest.mark.parametrize("field", ["message", "errmsg"])
def test_parse_reply_access_messages_are_access_refused_whatever_the_ret(message: str, ret: int, field: str) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        tape.parse_reply(200, _reply({"ret": ret, field: message}))
    assert caught.value.retriable is False


@pytest.mark.parametrize("message", ["appid is invalid", "sign invalid", "time expired"])
def test_parse_reply_access_messages_in_a_non_json_body_are_access_refused(message: str) -> None:
    with pytest.raises(LiveAccessRefused):
        tape.parse_reply(200, f"<html><body>error: {message}</body></html>".encode())


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_parse_reply_gateway_failures_are_unreachable_and_retriable(status: int) -> None:
    with pytest.raises(LiveUnreachable) as caught:
        tape.parse_reply(status, b"<html>Bad Gateway</html>")
    assert caught.value.retriable is True
    assert caught.value.code == f"http_{status}"


def test_parse_reply_gateway_failure_wins_over_an_ok_looking_body() -> None:
    with pytest.raises(LiveUnreachable):
        tape.parse_reply(503, _reply({"ret": 0, "output": {"task_id": 1}}))


@pytest.mark.parametrize("status", [404, 400, 403])
def test_parse_reply_http_4xx_is_access_refused(status: int) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        tape.parse_reply(status, b"Not Found")
    assert caught.value.retriable is False
    assert caught.value.code == f"http_{status}"


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b"\xff\xfe\x00", b'{"ret":0', b"[0]", b'{"ret":"0"}'])
def test_parse_reply_unreadable_200_is_in_doubt(body: bytes) -> None:
    with pytest.raises(LiveInDoubt) as caught:
        tape.parse_reply(200, body)
    assert caught.value.retriable is False


json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
reply_shaped = st.fixed_dictionaries(
    {},
    optional={
        "ret": st.integers(-(2**63), 2**63 - 1) | json_values,
        "message": json_values | st.sampled_from(tape.ACCESS_REFUSALS),
        "errmsg": json_values,
        "output": st.fixed_dictionaries({}, optional={"task_id": json_values | st.integers(0, 10**25).map(str)})
        | json_values,
    },
).map(orjson.dumps)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=200) | reply_shaped)
def test_parse_reply_returns_a_64_bit_task_id_or_raises_a_live_error(status: int, body: bytes) -> None:
    try:
        result = tape.parse_reply(status, body)
    except LiveError:
        return
    assert type(result) is int
    assert 0 <= result <= 2**64 - 1


def test_parse_reply_huge_digit_string_task_id_is_a_live_error_not_value_error() -> None:
    body = b'{"ret":0,"output":{"task_id":"' + b"1" * 5000 + b'"}}'
    with pytest.raises(LiveInDoubt):
        tape.parse_reply(200, body)
