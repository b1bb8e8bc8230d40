"""Dead letters (highlight.dead_letters): the headers that say why, and a copy that always fits."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight.dead_letters import (
    DEAD_LETTER_REASONS,
    DLQ_EXCEPTION_HEADER,
    HEADERS_DROPPED_HEADER,
    MAX_MESSAGE_CHARS,
    ORIGINAL_KEY_SHA256_HEADER,
    ORIGINAL_KEY_SIZE_HEADER,
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    REPLAY_HEADERS,
    TRUNCATED_HEADER,
    DeadLetterReason,
    Header,
    Streak,
    Unprocessable,
    dead_letter_headers,
    dead_letter_reason,
    fit,
    is_truncated,
    original_headers,
    replayed_headers,
)
from highlight.errors import RecordTooLarge
from highlight.kafka import record_size
from highlight.moment import INVALID_REASONS, InvalidMoment

ERROR = InvalidMoment("invalid_json", "value is not JSON: unexpected character: line 1 column 1 (char 0)")


def _headers(original: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    return dead_letter_headers(ERROR, "highlight.moments", 7, 123456789, original or [])


def test_dead_letter_headers_carry_the_kafka_connect_names() -> None:
    headers = dict(_headers())
    assert headers["__connect.errors.topic"] == b"highlight.moments"
    assert headers["__connect.errors.partition"] == b"7"
    assert headers["__connect.errors.offset"] == b"123456789"
    assert headers["__connect.errors.exception.class.name"] == b"invalid_json"
    assert headers["__connect.errors.exception.message"] == str(ERROR).encode()


def test_dead_letter_headers_carry_the_spring_names() -> None:
    headers = dict(_headers())
    assert headers["kafka_dlt-original-topic"] == b"highlight.moments"
    assert "kafka_dlt-original-partition" in headers
    assert "kafka_dlt-original-offset" in headers
    assert headers["kafka_dlt-exception-fqcn"] == b"invalid_json"
    assert headers["kafka_dlt-exception-message"] == str(ERROR).encode()


def test_spring_partition_and_offset_headers_are_big_endian_int_and_long() -> None:
    headers = dict(_headers())
    assert headers["kafka_dlt-original-partition"] == struct.pack(">i", 7)
    assert headers["kafka_dlt-original-offset"] == struct.pack(">q", 123456789)


def test_dead_letter_headers_carry_highlights_reason() -> None:
    assert dict(_headers())["highlight.dlq.reason"] == b"invalid_json"


def test_dead_letter_headers_keep_the_original_headers_first() -> None:
    original = [("trace-id", b"abc"), ("b", b""), ("trace-id", b"second"), ("__connect.errors.topic", b"older")]
    headers = _headers(original)
    assert headers[: len(original)] == original
    names = [name for name, _ in headers[len(original) :]]
    assert len(names) == len(set(names))  # each of ours exactly once
    assert set(names) == {
        "__connect.errors.topic",
        "__connect.errors.partition",
        "__connect.errors.offset",
        "__connect.errors.exception.class.name",
        "__connect.errors.exception.message",
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "kafka_dlt-original-offset",
        "kafka_dlt-exception-fqcn",
        "kafka_dlt-exception-message",
        "highlight.dlq.reason",
    }


def test_dead_letter_headers_do_not_mutate_the_original_sequence() -> None:
    original = [("a", b"1")]
    _headers(original)
    assert original == [("a", b"1")]


def test_dead_letter_header_values_are_utf8_bytes() -> None:
    error = InvalidMoment("schema_violation", "data.event_id must not be blank — 频道")
    headers = dead_letter_headers(error, "主题", 0, 0)
    assert all(isinstance(value, bytes) for _, value in headers)
    assert dict(headers)["__connect.errors.exception.message"] == "data.event_id must not be blank — 频道".encode()
    assert dict(headers)["__connect.errors.topic"] == "主题".encode()


# --- unprocessable: our own failure on one record -----------------------------------------------------


def _failure() -> Unprocessable:
    try:
        {}["attributes"]
    except KeyError as exc:
        return Unprocessable(exc)
    raise AssertionError


def test_unprocessable_headers_name_the_reason_and_the_exception_class() -> None:
    headers = dict(dead_letter_headers(_failure(), "highlight.moments", 3, 41))
    assert headers["highlight.dlq.reason"] == b"unprocessable"
    assert headers[DLQ_EXCEPTION_HEADER] == b"KeyError"
    assert headers["__connect.errors.exception.class.name"] == b"KeyError"
    assert headers["kafka_dlt-exception-fqcn"] == b"KeyError"
    assert headers["__connect.errors.exception.message"] == b"KeyError: 'attributes'"
    assert headers["__connect.errors.offset"] == b"41"


def test_a_highlight_exception_is_named_by_its_module_too() -> None:
    cause = Unprocessable(RecordTooLarge("Kafka send to x failed: MessageSizeTooLargeError"))
    assert cause.exception_class == "highlight.errors.RecordTooLarge"
    assert dict(dead_letter_headers(cause, "t", 0, 0))[DLQ_EXCEPTION_HEADER] == b"highlight.errors.RecordTooLarge"


def test_an_invalid_moment_has_no_exception_header() -> None:
    assert DLQ_EXCEPTION_HEADER not in dict(_headers())


def test_a_long_message_is_clipped_in_the_headers() -> None:
    cause = Unprocessable(ValueError("x" * 100_000))
    message = dict(dead_letter_headers(cause, "t", 0, 0))["__connect.errors.exception.message"]
    assert message is not None
    assert len(message.decode()) == MAX_MESSAGE_CHARS
    assert message.decode().endswith("…")


# --- a copy that always fits ----------------------------------------------------------------------------

BUDGET = 64 * 1024
OURS = dead_letter_headers(ERROR, "highlight.moments", 7, 123)


def _fit(key: bytes | None, value: bytes | None, original: list[Header], budget: int = BUDGET):  # type: ignore[no-untyped-def]  # the DeadLetter
    return fit(key, value, original, OURS, budget=budget, size_of=record_size)


def test_a_record_that_fits_goes_whole_with_our_headers_after_its_own() -> None:
    letter = _fit(b"key", b"value", [("trace", b"1"), ("n", None)])
    assert (letter.key, letter.value, letter.truncated) == (b"key", b"value", False)
    assert letter.headers == [("trace", b"1"), ("n", None), *OURS]


def test_a_tombstone_without_a_key_goes_with_an_empty_value_since_kafka_needs_one_of_them() -> None:
    assert _fit(None, None, []).value == b""
    assert _fit(b"k", None, []).value is None


def test_a_value_too_large_goes_truncated_with_its_size_and_sha256() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    letter = _fit(b"channel-1", value, [("trace", b"abc")])
    assert letter.truncated
    assert record_size(letter.key, letter.value, letter.headers) <= BUDGET
    assert letter.value is not None
    assert value.startswith(letter.value)
    assert len(letter.value) > BUDGET // 2, "as much of the value as fits"
    headers = dict(letter.headers)
    assert headers[TRUNCATED_HEADER] == b"true"
    assert headers[ORIGINAL_SIZE_HEADER] == str(len(value)).encode()
    assert headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(value).hexdigest().encode()
    assert letter.key == b"channel-1"
    assert headers["trace"] == b"abc", "small original headers stay"
    assert ORIGINAL_KEY_SIZE_HEADER not in headers
    assert HEADERS_DROPPED_HEADER not in headers
    for name, value_ in OURS:
        assert headers[name] == value_


def test_a_huge_key_and_huge_headers_are_cut_and_counted() -> None:
    key = b"k" * 500_000
    original: list[Header] = [("small", b"1"), ("huge", b"h" * 500_000), ("also-small", b"2")]
    letter = _fit(key, b"v" * 10, original)
    assert letter.truncated
    assert record_size(letter.key, letter.value, letter.headers) <= BUDGET
    headers = dict(letter.headers)
    assert letter.key is not None
    assert key.startswith(letter.key)
    assert len(letter.key) < len(key)
    assert headers[ORIGINAL_KEY_SIZE_HEADER] == b"500000"
    assert headers[ORIGINAL_KEY_SHA256_HEADER] == hashlib.sha256(key).hexdigest().encode()
    assert headers[HEADERS_DROPPED_HEADER] == b"1"
    assert "huge" not in headers
    assert (headers["small"], headers["also-small"]) == (b"1", b"2")
    assert letter.value == b"v" * 10


headers_strategy = st.lists(st.tuples(st.text(max_size=40), st.none() | st.binary(max_size=20_000)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    st.none() | st.binary(max_size=200_000),
    st.none() | st.binary(max_size=300_000),
    headers_strategy,
    st.integers(16 * 1024, 256 * 1024),
)
def test_a_dead_letter_always_fits_and_says_whether_it_was_cut(
    key: bytes | None, value: bytes | None, original: list[Header], budget: int
) -> None:
    letter = _fit(key, value, original, budget)
    assert record_size(letter.key, letter.value, letter.headers) <= budget
    assert letter.key is not None or letter.value is not None, "Kafka needs a key or a value"
    whole = record_size(key, value, [*original, *OURS]) <= budget
    assert letter.truncated == (not whole)
    headers = dict(letter.headers)
    if whole:
        assert (letter.key, letter.value or None, letter.headers) == (key, value or None, [*original, *OURS])
    else:
        assert headers[ORIGINAL_SHA256_HEADER] == hashlib.sha256(value or b"").hexdigest().encode()
        assert (value or b"").startswith(letter.value or b"")
        assert all(header in letter.headers for header in OURS), "our headers always go"


# --- N in a row -----------------------------------------------------------------------------------------


def test_the_streak_breaks_on_one_more_than_the_limit_in_a_row() -> None:
    streak = Streak(3)
    assert [streak.failed() for _ in range(3)] == [False, False, False]
    streak.ok()
    assert [streak.failed() for _ in range(4)] == [False, False, False, True]
    assert streak.broken


def test_a_broken_streak_stays_broken_whatever_finishes_after() -> None:
    streak = Streak(1)
    streak.failed()
    assert streak.failed()
    streak.ok()
    assert streak.broken, "the service is stopping: a record that finishes meanwhile does not undo it"


@pytest.mark.parametrize("limit", [1, 2, 100])
def test_any_other_outcome_starts_the_count_again(limit: int) -> None:
    streak = Streak(limit)
    for _ in range(5):
        for _ in range(limit):
            assert not streak.failed()
        streak.ok()
    assert streak.count == 0


# --- the reasons, one list ----------------------------------------------------------------------------------------


def test_the_reasons_dead_letters_carry_are_the_parsers_and_unprocessable() -> None:
    assert (*INVALID_REASONS, "unprocessable") == DEAD_LETTER_REASONS
    assert Unprocessable(ValueError("x")).reason in DEAD_LETTER_REASONS
    assert len(set(DEAD_LETTER_REASONS)) == len(DEAD_LETTER_REASONS)


# --- a replayed dead letter's headers ----------------------------------------------------------------------------

_OURS = ("__connect.errors.", "kafka_dlt-", "highlight.dlq.")
header_names = st.text(min_size=1, max_size=30)
record_headers = st.lists(st.tuples(header_names, st.none() | st.binary(max_size=20)), max_size=8)


def _error(reason: DeadLetterReason) -> InvalidMoment | Unprocessable:
    return Unprocessable(RuntimeError("boom")) if reason == "unprocessable" else InvalidMoment(reason, "why")


@given(record_headers, st.sampled_from(DEAD_LETTER_REASONS))
def test_a_dead_letters_own_headers_are_exactly_the_records_original_ones(
    original: list[Header], reason: DeadLetterReason
) -> None:
    # Whatever the record carried, even names like ours, as long as one of its own ends the list.
    if original and original[-1][0].startswith(_OURS):
        original = [*original, ("own", b"last")]
    dead = dead_letter_headers(_error(reason), "highlight.moments", 3, 41, original)
    assert original_headers(dead) == original
    assert dead_letter_reason(dead) == reason
    assert not is_truncated(dead)


def test_a_truncated_copys_marks_go_with_the_rest_of_the_dead_letter_block() -> None:
    original: list[Header] = [("trace", b"t-1")]
    ours = dead_letter_headers(ERROR, "m", 0, 0)
    copy = fit(b"k", b"v" * 5000, original, ours, budget=2000, size_of=record_size)
    assert copy.truncated
    assert is_truncated(copy.headers)
    assert original_headers(copy.headers) == original


def test_a_records_own_header_named_like_ours_survives_when_it_is_not_at_the_end() -> None:
    original: list[Header] = [("kafka_dlt-original-topic", b"upstream"), ("trace", b"t-1")]
    dead = dead_letter_headers(InvalidMoment("too_large", "big"), "m", 0, 0, original)
    assert original_headers(dead) == original


def test_replayed_headers_are_the_originals_then_where_the_dead_letter_was() -> None:
    dead = dead_letter_headers(InvalidMoment("too_large", "big"), "m", 0, 5, [("trace", b"t-1")])
    assert replayed_headers(dead, "m.dlq", 2, 17) == [
        ("trace", b"t-1"),
        ("highlight.replay.topic", b"m.dlq"),
        ("highlight.replay.partition", b"2"),
        ("highlight.replay.offset", b"17"),
    ]


def test_a_second_replay_names_only_the_latest_dead_letter() -> None:
    first = replayed_headers(dead_letter_headers(InvalidMoment("too_large", "x"), "m", 0, 5, [("a", b"1")]), "d", 0, 9)
    again = dead_letter_headers(Unprocessable(RuntimeError("y")), "m", 1, 30, first)
    second = replayed_headers(again, "d", 1, 44)
    assert [name for name, _ in second].count("highlight.replay.offset") == 1
    assert dict(second)["highlight.replay.offset"] == b"44"
    assert second[0] == ("a", b"1")
    assert {name for name, _ in second} == {"a", *REPLAY_HEADERS}


def test_a_record_without_our_reason_header_has_no_reason() -> None:
    assert dead_letter_reason([("trace", b"t"), ("highlight.dlq.reason", None)]) is None
