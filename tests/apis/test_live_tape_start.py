"""The Live_Tape_Start protocol rules (highlight.apis.live_tape_start): pure, no network."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import recording
from highlight.apis import live_tape_start
from highlight.config import Secret
from highlight.errors import LiveAccessRefused, LiveError, LiveInDoubt, LiveLimitReached, LiveRefused, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow

APPID = "1234"
KEY = "5d41402abc4b2a76b9719d911017c592"
NOW = datetime(2024, 5, 1, 12, 15, 0, tzinfo=UTC)  # 20:15:00 in China Standard Time

# Channel ids as JSON can carry them: any text but lone surrogates (orjson refuses those).
channel_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)


def _query(options: RecordingOptions, now: datetime = NOW) -> dict[str, list[str]]:
    text = live_tape_start.query_string(APPID, KEY, options, recording.window_at(now, options.record_seconds), now)
    return parse_qs(text, keep_blank_values=True, strict_parsing=True)


def _reply(document: object) -> bytes:
    return orjson.dumps(document)


# --- signing --------------------------------------------------------------------------------------


def test_sign_matches_the_documented_vector() -> None:
    assert live_tape_start.sign("5d41402abc4b2a76b9719d911017c592", 1471850187) == "b17971b51ba0fe5916ddcd96692e9fb3"


def test_sign_is_md5_of_key_then_decimal_t() -> None:
    assert live_tape_start.sign("abc", 42) == hashlib.md5(b"abc42", usedforsecurity=False).hexdigest()


# --- the query --------------------------------------------------------------------------------------


def test_query_string_has_the_documented_parameters_and_encoding() -> None:
    text = live_tape_start.query_string(
        APPID,
        KEY,
        RecordingOptions("8888_test123", 300),
        RecordingWindow("2017-05-20 10:00:00", "2017-05-20 10:30:00"),
        NOW,
    )
    assert "Param.s.start_time=2017-05-20+10%3A00%3A00" in text.split("&")
    assert "Param.s.end_time=2017-05-20+10%3A30%3A00" in text.split("&")
    assert "Param.n.task_sub_type=1" in text.split("&")
    assert "interface=Live_Tape_Start" in text.split("&")
    assert "appid=1234" in text.split("&")
    assert "Param.s.channel_id=8888_test123" in text.split("&")


def test_query_string_t_is_the_expiry_now_plus_60_and_sign_is_md5_of_key_plus_t() -> None:
    query = _query(RecordingOptions("8888_test123", 300), NOW.replace(microsecond=999_999))
    t = int(NOW.timestamp()) + 60
    assert query["t"] == [str(t)]
    assert query["sign"] == [hashlib.md5(f"{KEY}{t}".encode(), usedforsecurity=False).hexdigest()]


def test_query_string_omits_optional_fields_when_unset() -> None:
    query = _query(RecordingOptions("c", 300))
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
    options = RecordingOptions(
        "c", 600, file_format="aac", record_type="audio", domain="a.b.c", path="live/x", mix_stream=1
    )
    query = _query(options)
    assert query["Param.s.file_format"] == ["aac"]
    assert query["Param.s.record_type"] == ["audio"]
    assert query["Param.s.domain"] == ["a.b.c"]
    assert query["Param.s.path"] == ["live/x"]
    assert query["Param.n.mix_stream"] == ["1"]
    assert query["Param.n.task_sub_type"] == ["1"]


def test_query_string_sends_mix_stream_zero_when_set_to_zero() -> None:
    assert _query(RecordingOptions("c", 300, mix_stream=0))["Param.n.mix_stream"] == ["0"]


def test_query_string_times_are_the_window_in_cst() -> None:
    query = _query(RecordingOptions("c", 7200))
    assert query["Param.s.start_time"] == ["2024-05-01 20:15:00"]
    assert query["Param.s.end_time"] == ["2024-05-01 20:45:00"]


@pytest.mark.parametrize(
    "channel_id",
    ["a&b=c", "x+y", "100%", "path/to", "with space", "a=b&c=d+e%20f/g h", "直播频道", "🎥🔥", "é\u0301", "#frag?q"],
)
def test_query_string_carries_tricky_channel_ids_intact(channel_id: str) -> None:
    query = _query(RecordingOptions(channel_id, 300))
    assert query["Param.s.channel_id"] == [channel_id]
    assert query["appid"] == [APPID]  # no parameter was split or swallowed


@given(channel_text)
def test_query_string_round_trips_any_channel_id_through_parse_qs(channel_id: str) -> None:
    query = _query(RecordingOptions(channel_id, 300))
    assert query["Param.s.channel_id"] == [channel_id]
    assert query["Param.n.task_sub_type"] == ["1"]


# --- the reply --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [0, 1, 2**53 + 1, 18446744073709551615])
def test_parse_reply_keeps_the_64_bit_task_id_exactly(task_id: int) -> None:
    body = b'{"ret":0,"retcode":0,"message":"","output":{"task_id":%d}}' % task_id
    result = live_tape_start.parse_reply(200, body)
    assert result == task_id
    assert type(result) is int


def test_parse_reply_accepts_the_task_id_as_a_digit_string() -> None:
    assert (
        live_tape_start.parse_reply(200, _reply({"ret": 0, "output": {"task_id": "18446744073709551615"}})) == 2**64 - 1
    )


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
        live_tape_start.parse_reply(200, _reply(body))


def test_parse_reply_task_id_above_64_bits_is_in_doubt() -> None:
    with pytest.raises(LiveInDoubt):
        live_tape_start.parse_reply(200, b'{"ret":0,"output":{"task_id":"18446744073709551616"}}')


def test_parse_reply_ret_1202_is_refused_and_retriable() -> None:
    with pytest.raises(LiveRefused) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": 1202, "message": "request frequency exceeds limit"}))
    assert caught.value.retriable is True
    assert caught.value.code == "1202"


@pytest.mark.parametrize("ret", [1301, 1204, 20601, 1, -1])
def test_parse_reply_other_rets_are_refused_not_retriable_with_code_str_ret(ret: int) -> None:
    with pytest.raises(LiveRefused) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": ret, "message": "has not live stream"}))
    assert type(caught.value) is LiveRefused
    assert caught.value.retriable is False
    assert caught.value.code == str(ret)
    assert "has not live stream" in caught.value.message


def test_parse_reply_internal_error_1201_is_in_doubt_never_a_plain_refusal() -> None:
    with pytest.raises(LiveInDoubt) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": 1201, "message": "internal error"}))
    assert caught.value.code == "1201"
    assert "internal error" in caught.value.message


@pytest.mark.parametrize(("ret", "reason"), [(1206, "running_limit"), (1207, "daily_limit")])
def test_parse_reply_the_simulators_limit_rets_are_limits_with_their_reason(ret: int, reason: str) -> None:
    with pytest.raises(LiveLimitReached) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": ret, "message": "exceeds the limit"}))
    assert (caught.value.code, caught.value.reason, caught.value.retriable) == (str(ret), reason, False)


def test_parse_reply_refusal_without_a_message_still_names_the_ret() -> None:
    with pytest.raises(LiveRefused) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": 20601}))
    assert "20601" in caught.value.message


@pytest.mark.parametrize("message", ["appid is invalid", "sign invalid", "time expired", "Sign Invalid!"])
@pytest.mark.parametrize("ret", [-1, 1, 1202, 1204, 4100])
@pytest.mark.parametrize("field", ["message", "errmsg"])
def test_parse_reply_access_messages_are_access_refused_whatever_the_ret(message: str, ret: int, field: str) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        live_tape_start.parse_reply(200, _reply({"ret": ret, field: message}))
    assert caught.value.retriable is False


@pytest.mark.parametrize("message", ["appid is invalid", "sign invalid", "time expired"])
def test_parse_reply_access_messages_in_a_non_json_body_are_access_refused(message: str) -> None:
    with pytest.raises(LiveAccessRefused):
        live_tape_start.parse_reply(200, f"<html><body>error: {message}</body></html>".encode())


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_parse_reply_gateway_failures_are_unreachable_and_retriable(status: int) -> None:
    with pytest.raises(LiveUnreachable) as caught:
        live_tape_start.parse_reply(status, b"<html>Bad Gateway</html>")
    assert caught.value.retriable is True
    assert caught.value.code == f"http_{status}"


def test_parse_reply_gateway_failure_wins_over_an_ok_looking_body() -> None:
    with pytest.raises(LiveUnreachable):
        live_tape_start.parse_reply(503, _reply({"ret": 0, "output": {"task_id": 1}}))


@pytest.mark.parametrize("status", [404, 400, 403])
def test_parse_reply_http_4xx_is_access_refused(status: int) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        live_tape_start.parse_reply(status, b"Not Found")
    assert caught.value.retriable is False
    assert caught.value.code == f"http_{status}"


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b"\xff\xfe\x00", b'{"ret":0', b"[0]", b'{"ret":"0"}'])
def test_parse_reply_unreadable_200_is_in_doubt(body: bytes) -> None:
    with pytest.raises(LiveInDoubt) as caught:
        live_tape_start.parse_reply(200, body)
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
        "message": json_values | st.sampled_from(live_tape_start.ACCESS_REFUSALS),
        "errmsg": json_values,
        "output": st.fixed_dictionaries({}, optional={"task_id": json_values | st.integers(0, 10**25).map(str)})
        | json_values,
    },
).map(orjson.dumps)


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=200) | reply_shaped)
def test_parse_reply_returns_a_64_bit_task_id_or_raises_a_live_error(status: int, body: bytes) -> None:
    try:
        result = live_tape_start.parse_reply(status, body)
    except LiveError:
        return
    assert type(result) is int
    assert 0 <= result <= 2**64 - 1


def test_parse_reply_huge_digit_string_task_id_is_a_live_error_not_value_error() -> None:
    body = b'{"ret":0,"output":{"task_id":"' + b"1" * 5000 + b'"}}'
    with pytest.raises(LiveInDoubt):
        live_tape_start.parse_reply(200, body)


# --- the read-only probe (highlight check) ------------------------------------------------------------------------

PROBE_NOW = datetime(2030, 6, 1, 4, 0, 0, tzinfo=UTC)


def _probe_backend(key: str = "5d41402abc4b2a76b9719d911017c592") -> live_tape_start.LiveTapeStart:
    return live_tape_start.LiveTapeStart(url="http://fcgi.example/common_access?x=1", appid="1234", key=Secret(key))


def test_the_probe_lists_live_channels_signed_like_a_recording_call_and_asks_for_nothing_else() -> None:
    request = _probe_backend().probe(PROBE_NOW)
    assert request.method == "GET"
    base, query = request.url.split("?")
    assert base == "http://fcgi.example/common_access"
    t = int(PROBE_NOW.timestamp()) + live_tape_start.SIGNATURE_TTL_SECONDS
    assert parse_qs(query, strict_parsing=True) == {
        "appid": ["1234"],
        "interface": ["Live_Channel_GetLiveChannelList"],
        "t": [str(t)],
        "sign": [live_tape_start.sign("5d41402abc4b2a76b9719d911017c592", t)],
    }


def test_a_probe_reply_with_ret_0_is_accepted_and_counts_the_live_channels() -> None:
    body = orjson.dumps({"ret": 0, "message": "", "output": {"all_count": 2, "channel_list": []}})
    assert _probe_backend().parse_probe(200, body) == "Live_Channel_GetLiveChannelList answered ret 0 (2 channels live)"


@pytest.mark.parametrize("message", ["appid is invalid", "sign invalid", "time expired"])
def test_a_probe_refused_by_the_gateway_is_access_refused(message: str) -> None:
    with pytest.raises(LiveAccessRefused):
        _probe_backend().parse_probe(200, orjson.dumps({"ret": -1, "message": message}))


def test_a_probe_refused_by_the_backend_behind_the_gateway_proves_the_credentials() -> None:
    said = _probe_backend().parse_probe(200, orjson.dumps({"ret": 1204, "message": "bad parameter"}))
    assert "ret 1204" in said
    assert "after accepting the signature" in said


def test_a_probe_answered_with_an_internal_error_proves_nothing_as_in_the_other_apis() -> None:
    with pytest.raises(LiveInDoubt) as caught:
        _probe_backend().parse_probe(200, orjson.dumps({"ret": 1201, "message": "internal error"}))
    assert "task may exist" not in caught.value.message, "a probe creates nothing"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, orjson.dumps({"ret": 1202, "message": "request frequency exceeds limit"}), LiveRefused),
        (503, b"", LiveUnreachable),
        (404, b"not found", LiveAccessRefused),
        (200, b"<html>oops</html>", LiveInDoubt),
    ],
)
def test_a_probe_answer_that_proves_nothing_is_a_live_error(status: int, body: bytes, error: type[LiveError]) -> None:
    with pytest.raises(error):
        _probe_backend().parse_probe(status, body)


probe_shaped = st.fixed_dictionaries(
    {},
    optional={
        "ret": st.integers(-(2**63), 2**63 - 1) | json_values,
        "message": json_values | st.sampled_from(live_tape_start.ACCESS_REFUSALS),
        "output": st.fixed_dictionaries({}, optional={"all_count": json_values}) | json_values,
    },
).map(orjson.dumps)


@given(st.integers(100, 599), st.binary(max_size=200) | probe_shaped)
def test_parse_probe_returns_what_was_said_or_raises_a_live_error(status: int, body: bytes) -> None:
    try:
        said = _probe_backend().parse_probe(status, body)
    except LiveError:
        return
    assert said.startswith("Live_Channel_GetLiveChannelList answered ret ")
