"""Live's event notifications, pure: the signature, the grace after `t`, numbers as numbers or strings."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import signing
from highlight.callbacks import notification
from highlight.callbacks.notification import (
    AUTHENTIC,
    BAD_SIGN,
    EXPIRED,
    MALFORMED,
    MAX_BODY_BYTES,
    TOO_LARGE,
    InvalidNotification,
    authenticate,
    inspect,
    parse_recording_file,
)

# Tencent's documented vector (the same scheme signs the API's calls and the callbacks).
DOC_KEY = "5d41402abc4b2a76b9719d911017c592"
DOC_T = 1471850187
DOC_SIGN = "b17971b51ba0fe5916ddcd96692e9fb3"
KEY = "callback-key-for-tests"
T = 1_900_000_000
GRACE = 900


def signed(key: str = KEY, t: int | str = T, **fields: Any) -> dict[str, Any]:
    return {"t": t, "sign": signing.sign(key, t), **fields}


def file_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_type": 100,
        "appid": 1250000000,
        "stream_id": "8888_test123",
        "channel_id": "8888_test123",
        "file_id": "5285890781763144364",
        "video_url": "http://1250000000.vod2.myqcloud.com/d7d2/5285890781763144364/f0.mp4",
        "file_format": "mp4",
        "file_size": 104857600,
        "duration": 300,
        "start_time": 1_800_000_000,
        "end_time": 1_800_000_300,
        "task_id": "16524440430269856708",
        "record_temp_id": "",
    }
    return fields | changes


# --- the signature ---------------------------------------------------------------------------------


def test_the_documented_signature_vector() -> None:
    assert signing.sign(DOC_KEY, DOC_T) == DOC_SIGN
    assert signing.sign(DOC_KEY, str(DOC_T)) == DOC_SIGN
    assert signing.verify(DOC_KEY, DOC_T, DOC_SIGN)
    assert signing.verify(DOC_KEY, DOC_T, DOC_SIGN.upper()), "hex in any case"


def test_the_documented_vector_authenticates_a_notification_until_t_plus_the_grace() -> None:
    document = {"t": DOC_T, "sign": DOC_SIGN, "event_type": 100}
    assert authenticate(document, DOC_KEY, DOC_T - 600, GRACE) == AUTHENTIC
    assert authenticate(document, DOC_KEY, DOC_T + GRACE, GRACE) == AUTHENTIC, "the last second of the grace"
    assert authenticate(document, DOC_KEY, DOC_T + GRACE + 1, GRACE) == EXPIRED
    assert authenticate({**document, "t": str(DOC_T)}, DOC_KEY, DOC_T, GRACE) == AUTHENTIC, "t as a string"


@pytest.mark.parametrize(
    "document",
    [
        {"t": DOC_T, "sign": "0" * 32},
        {"t": DOC_T + 1, "sign": DOC_SIGN},
        {"t": DOC_T},
        {"sign": DOC_SIGN},
        {"t": DOC_T, "sign": ""},
        {"t": DOC_T, "sign": 12345},
        {"t": float(DOC_T), "sign": DOC_SIGN},
        {"t": -1, "sign": DOC_SIGN},
        {"t": True, "sign": DOC_SIGN},
        {"t": f" {DOC_T}", "sign": DOC_SIGN},
        {"t": DOC_T, "sign": "b17971b51ba0fe5916ddcd96692e9fb３"},  # noqa: RUF001 -- a look-alike digit on purpose
    ],
    ids=[
        "wrong",
        "other-t",
        "no-sign",
        "no-t",
        "empty-sign",
        "number-sign",
        "float-t",
        "negative-t",
        "bool-t",
        "padded-t",
        "non-ascii-sign",
    ],
)
def test_a_wrong_or_missing_sign_or_t_is_a_bad_sign(document: dict[str, Any]) -> None:
    assert authenticate(document, DOC_KEY, DOC_T, GRACE) == BAD_SIGN


def test_an_expired_t_with_a_wrong_sign_is_a_bad_sign_not_expired() -> None:
    assert authenticate({"t": 1, "sign": "0" * 32}, KEY, T, GRACE) == BAD_SIGN


@given(key=st.text(min_size=1, max_size=40), t=st.integers(0, 10**12), as_text=st.booleans())
def test_any_key_and_t_sign_and_verify(key: str, t: int, as_text: bool) -> None:
    given_t: int | str = str(t) if as_text else t
    document = signed(key, given_t)
    assert document["sign"] == hashlib.md5((key + str(t)).encode(), usedforsecurity=False).hexdigest()
    assert authenticate(document, key, t, 0) == AUTHENTIC
    assert authenticate(document, key + "x", t, 0) == BAD_SIGN


# --- inspecting a body -------------------------------------------------------------------------------


def test_an_authentic_body_is_read_for_its_event_channel_file_and_task() -> None:
    body = orjson.dumps(signed(**file_fields()))
    inspected = inspect(body, KEY, T, GRACE)
    assert inspected.verdict == AUTHENTIC
    assert (inspected.event_type, inspected.channel) == (100, "8888_test123")
    assert (inspected.file_id, inspected.task_id, inspected.t) == ("5285890781763144364", "16524440430269856708", T)


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b"not json", MALFORMED),
        (b"[1, 2]", MALFORMED),
        (b'"text"', MALFORMED),
        (b"\xff\xfe{}", MALFORMED),
        (b"", MALFORMED),
        (b"{}", BAD_SIGN),
        (orjson.dumps(signed(key="another-key")), BAD_SIGN),
        (orjson.dumps(signed(t=T - GRACE - 1)), EXPIRED),
        (orjson.dumps(signed(t=T - GRACE)), AUTHENTIC),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", TOO_LARGE),
    ],
    ids=["text", "array", "string", "not-utf8", "empty", "unsigned", "other-key", "expired", "in-grace", "too-large"],
)
def test_each_kind_of_body_gets_its_verdict(body: bytes, verdict: str) -> None:
    assert inspect(body, KEY, T, GRACE).verdict == verdict


def test_a_body_of_exactly_64_kib_is_read() -> None:
    document = signed()
    padding = MAX_BODY_BYTES - len(orjson.dumps({**document, "pad": ""}))
    body = orjson.dumps({**document, "pad": "x" * padding})
    assert len(body) == MAX_BODY_BYTES
    assert inspect(body, KEY, T, GRACE).verdict == AUTHENTIC


def test_the_channel_is_the_stream_id_else_the_channel_id() -> None:
    assert inspect(orjson.dumps(signed(channel_id="c", stream_id="s")), KEY, T, GRACE).channel == "s"
    assert inspect(orjson.dumps(signed(channel_id="c", stream_id="")), KEY, T, GRACE).channel == "c"
    assert inspect(orjson.dumps(signed(event_type=1)), KEY, T, GRACE).channel is None


@pytest.mark.parametrize(
    ("event_type", "label"), [(100, "100"), ("100", "100"), (0, "0"), (332, "332"), (7, "other"), (None, "unknown")]
)
def test_event_type_labels_are_a_closed_set(event_type: object, label: str) -> None:
    assert notification.event_type_label(notification.integer(event_type)) == label


# --- a recording file --------------------------------------------------------------------------------


def test_a_recording_file_is_read_from_a_current_notification() -> None:
    file = parse_recording_file(signed(**file_fields()))
    assert file == notification.RecordingFile(
        channel_id="8888_test123",
        file_id="5285890781763144364",
        video_url="http://1250000000.vod2.myqcloud.com/d7d2/5285890781763144364/f0.mp4",
        start_time=1_800_000_000,
        end_time=1_800_000_300,
        task_id="16524440430269856708",
        file_format="mp4",
        file_size=104857600,
        duration=300,
        template=False,
    )


NUMERIC = ("t", "event_type", "start_time", "end_time", "duration", "file_size", "appid")


def test_the_legacy_shape_with_every_number_as_a_string_reads_the_same() -> None:
    current = signed(**file_fields(task_id=16524440430269856708))
    legacy = {name: str(value) if name in NUMERIC or name == "task_id" else value for name, value in current.items()}
    legacy["sign"] = signing.sign(KEY, str(T))
    assert parse_recording_file(legacy) == parse_recording_file(current)
    assert inspect(orjson.dumps(legacy), KEY, T, GRACE).verdict == AUTHENTIC


@given(
    values=st.fixed_dictionaries(
        {name: st.integers(0, 2**63) for name in ("start", "length", "size", "duration", "task")}
    ),
    strings=st.fixed_dictionaries({name: st.booleans() for name in ("start", "end", "size", "duration", "task")}),
)
def test_numbers_and_decimal_strings_are_read_alike(values: dict[str, int], strings: dict[str, bool]) -> None:
    start = values["start"] % notification.MAX_UNIX_SECONDS
    end = min(start + values["length"], notification.MAX_UNIX_SECONDS)

    def shape(name: str, value: int) -> int | str:
        return str(value) if strings[name] else value

    fields = file_fields(
        start_time=shape("start", start),
        end_time=shape("end", end),
        file_size=shape("size", values["size"]),
        duration=shape("duration", values["duration"]),
        task_id=shape("task", values["task"]),
    )
    file = parse_recording_file(fields)
    assert (file.start_time, file.end_time, file.file_size) == (start, end, values["size"])
    assert (file.duration, file.task_id) == (values["duration"], str(values["task"]))


@given(st.one_of(st.floats(), st.text(max_size=25), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
def test_integer_reads_only_non_negative_integers_and_digit_strings(value: object) -> None:
    read = notification.integer(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= notification.MAX_DIGITS:
        assert read == int(value)
    else:
        assert read is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_type": 1}, "not_a_file"),
        ({"event_type": "200"}, "not_a_file"),
        ({"stream_id": "", "channel_id": None}, "schema"),
        ({"file_id": ""}, "schema"),
        ({"video_url": None}, "schema"),
        ({"start_time": "yesterday"}, "schema"),
        ({"end_time": -5}, "schema"),
        ({"start_time": 1_800_000_301}, "schema"),
        ({"end_time": notification.MAX_UNIX_SECONDS + 1}, "schema"),
    ],
    ids=["stream-event", "screenshot", "no-channel", "no-file-id", "no-url", "bad-start", "negative-end",
         "ends-before-start", "beyond-rfc3339"],
)  # fmt: skip
def test_a_notification_that_is_no_usable_recording_file_says_why(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidNotification) as invalid:
        parse_recording_file(file_fields(**changes))
    assert invalid.value.reason == reason


def test_a_template_recording_is_recognised_by_its_record_temp_id() -> None:
    assert parse_recording_file(file_fields(record_temp_id="12345")).template
    assert parse_recording_file(file_fields(record_temp_id=7)).template
    for empty in ("", 0, "0", None):
        assert not parse_recording_file(file_fields(record_temp_id=empty)).template


def test_ids_are_strings_numbers_in_decimal() -> None:
    file = parse_recording_file(file_fields(file_id=5285890781763144364, task_id="007"))
    assert (file.file_id, file.task_id) == ("5285890781763144364", "7")
    assert parse_recording_file(file_fields(task_id="CreateRecordTask-1")).task_id == "CreateRecordTask-1"
    assert parse_recording_file(file_fields(task_id="")).task_id is None
    assert parse_recording_file(file_fields(duration="300.5")).duration == 300.5
