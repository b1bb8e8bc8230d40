"""Dedup state (highlight.dedup): the wire format of keys and entries, expiry, and `decide`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import dedup
from highlight.dedup import Decision, Entry, Phase, Verdict, decide
from highlight.moment import Moment
from highlight.recording import format_cst

OCCURRED = datetime(2024, 5, 1, 12, 15, 0, tzinfo=UTC)
MAX_AGE = 120


def _moment(event_id: str = "e-1", occurred_at: datetime = OCCURRED) -> Moment:
    return Moment(
        event_id=event_id,
        channel_id="ch",
        occurred_at=occurred_at,
        occurred_at_text=occurred_at.isoformat(),
    )


def _entry(phase: Phase, event_id: str = "e-1") -> Entry:
    return Entry(phase, event_id, "2024-05-01 20:15:00", "2024-05-01 20:20:00", task_id="42", attempts=1)


no_surrogates = st.characters(blacklist_categories=("Cs",))
texts = st.text(no_surrogates, max_size=40)
optional_texts = st.none() | texts
entries = st.builds(
    Entry,
    phase=st.sampled_from(Phase),
    event_id=texts,
    start_time=optional_texts,
    end_time=optional_texts,
    task_id=st.none() | st.integers(0, 2**64 - 1).map(str) | texts,
    error_code=optional_texts,
    error_message=optional_texts,
    attempts=st.integers(0, 1000),
    api=st.none() | st.sampled_from(["live_tape_start", "create_record", "create_live_record"]),
    request_id=optional_texts,
    clipped_files=st.lists(texts, max_size=4).map(tuple),
)


# --- wire format ----------------------------------------------------------------------------------


@given(
    st.text(no_surrogates) | st.sampled_from(["a|1", "a:1", '["x",1]', "a\x00b", "a,b", "\\", '"', "频道 🎥"]),
    st.integers(-(2**63), 2**63 - 1),
)
def test_key_round_trips_any_channel_and_bucket(channel: str, bucket: int) -> None:
    assert dedup.decode_key(dedup.encode_key((channel, bucket))) == (channel, bucket)


def test_keys_of_different_channels_or_buckets_never_collide() -> None:
    keys = [("a|1", 2), ("a", 12), ("a|12", 0), ("a", 1), ("a,1", 2), ('a",1', 2)]
    assert len({dedup.encode_key(key) for key in keys}) == len(keys)


@pytest.mark.parametrize("raw", [b"[1, 2]", b'["a", "1"]', b'["a", 1.5]', b'{"a": 1}'])
def test_decode_key_rejects_what_is_not_a_key(raw: bytes) -> None:
    with pytest.raises((ValueError, TypeError)):
        dedup.decode_key(raw)


def test_entry_written_before_clips_existed_decodes_without_clipped_files() -> None:
    assert dedup.decode_entry(b'{"phase": "started", "event_id": "e-1", "task_id": "7"}').clipped_files == ()


def test_the_files_a_recording_was_clipped_for_are_kept_in_order() -> None:
    entry = Entry(Phase.STARTED, "e-1", task_id="7", clipped_files=("f-2", "f-1"))
    assert orjson.loads(dedup.encode_entry(entry))["clipped_files"] == ["f-2", "f-1"]
    assert dedup.decode_entry(dedup.encode_entry(entry)).clipped_files == ("f-2", "f-1")


@pytest.mark.parametrize("raw", [b'"f-1"', b"[1]", b"null", b'{"f": 1}'])
def test_clipped_files_that_are_not_a_list_of_strings_make_the_entry_unreadable(raw: bytes) -> None:
    with pytest.raises(ValueError, match="clipped_files"):
        dedup.decode_entry(b'{"phase": "started", "event_id": "e", "clipped_files": ' + raw + b"}")


def test_entry_written_before_backends_existed_decodes_without_api() -> None:
    entry = dedup.decode_entry(b'{"phase": "started", "event_id": "e-1", "task_id": "7"}')
    assert (entry.api, entry.request_id) == (None, None)


@given(entries)
def test_entry_round_trips(entry: Entry) -> None:
    assert dedup.decode_entry(dedup.encode_entry(entry)) == entry


def test_encoded_entry_omits_unset_fields_and_uses_phase_values() -> None:
    document = orjson.loads(dedup.encode_entry(Entry(Phase.INTENT, "e-1")))
    assert document == {"phase": "intent", "event_id": "e-1"}


def test_encoded_entry_keeps_the_task_id_as_a_string() -> None:
    entry = Entry(Phase.STARTED, "e-1", "a", "b", task_id=str(2**64 - 1), attempts=2)
    document = orjson.loads(dedup.encode_entry(entry))
    assert document["task_id"] == "18446744073709551615"
    assert document["attempts"] == 2
    assert document["phase"] == "started"


# --- expiry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "size", "max_age", "expected"),
    [(0, 300, 120, 300 + 120 + 60), (5_714_552, 300, 120, 5_714_553 * 300 + 180), (-1, 60, 0, 60)],
)
def test_expires_at_is_the_end_of_the_bucket_plus_max_age_plus_grace(
    bucket: int, size: int, max_age: int, expected: int
) -> None:
    assert dedup.expires_at(bucket, size, max_age) == expected


@given(st.integers(-(10**9), 10**9), st.integers(1, 86_400), st.integers(0, 86_400))
def test_expires_at_formula(bucket: int, size: int, max_age: int) -> None:
    assert dedup.expires_at(bucket, size, max_age) == (bucket + 1) * size + max_age + dedup.EXPIRY_GRACE_SECONDS


def test_expiry_grace_is_a_minute() -> None:
    assert dedup.EXPIRY_GRACE_SECONDS == 60


# --- decide ---------------------------------------------------------------------------------------


def test_no_entry_and_fresh_is_a_call() -> None:
    assert decide(_moment(), None, OCCURRED + timedelta(seconds=5), MAX_AGE) == Decision(Verdict.CALL)


def test_no_entry_and_from_the_future_is_a_call() -> None:
    assert decide(_moment(), None, OCCURRED - timedelta(seconds=30), MAX_AGE).verdict is Verdict.CALL


def test_no_entry_exactly_max_age_old_is_still_a_call() -> None:
    assert decide(_moment(), None, OCCURRED + timedelta(seconds=MAX_AGE), MAX_AGE).verdict is Verdict.CALL


def test_no_entry_and_older_than_max_age_is_expired() -> None:
    decision = decide(_moment(), None, OCCURRED + timedelta(seconds=MAX_AGE, milliseconds=1), MAX_AGE)
    assert decision == Decision(Verdict.EXPIRED, "expired")


def test_age_is_measured_between_instants_not_wall_clocks() -> None:
    # Occurred at 20:15 +08:00 = 12:15Z; "now" 12:16Z expressed in UTC-10 is 02:16 — one minute later.
    occurred = datetime.fromisoformat("2024-05-01T20:15:00+08:00")
    now = datetime.fromisoformat("2024-05-01T02:16:00-10:00")
    assert decide(_moment(occurred_at=occurred), None, now, MAX_AGE).verdict is Verdict.CALL


@pytest.mark.parametrize("age", [0, 5, 10_000_000])
def test_started_entry_answers_started_for_the_same_event(age: int) -> None:
    entry = _entry(Phase.STARTED, "e-1")
    decision = decide(_moment("e-1"), entry, OCCURRED + timedelta(seconds=age), MAX_AGE)
    assert decision == Decision(Verdict.ANSWER, "started", entry)


@pytest.mark.parametrize("age", [0, 5, 10_000_000])
def test_started_entry_answers_duplicate_for_another_event_even_when_old(age: int) -> None:
    entry = _entry(Phase.STARTED, "e-1")
    decision = decide(_moment("e-2"), entry, OCCURRED + timedelta(seconds=age), MAX_AGE)
    assert decision == Decision(Verdict.ANSWER, "duplicate", entry)


@pytest.mark.parametrize("phase", [Phase.IN_DOUBT, Phase.INTENT])
@pytest.mark.parametrize("event_id", ["e-1", "e-2"])
@pytest.mark.parametrize("age", [0, 10_000_000])
def test_in_doubt_and_intent_entries_answer_in_doubt(phase: Phase, event_id: str, age: int) -> None:
    entry = _entry(phase, "e-1")
    decision = decide(_moment(event_id), entry, OCCURRED + timedelta(seconds=age), MAX_AGE)
    assert decision == Decision(Verdict.ANSWER, "in_doubt", entry)


@pytest.mark.parametrize("age", [0, 10_000_000])
def test_failed_entry_answers_failed_for_the_same_event(age: int) -> None:
    entry = _entry(Phase.FAILED, "e-1")
    decision = decide(_moment("e-1"), entry, OCCURRED + timedelta(seconds=age), MAX_AGE)
    assert decision == Decision(Verdict.ANSWER, "failed", entry)


def test_failed_entry_does_not_block_another_event_of_the_key() -> None:
    entry = _entry(Phase.FAILED, "e-1")
    assert decide(_moment("e-2"), entry, OCCURRED + timedelta(seconds=5), MAX_AGE) == Decision(Verdict.CALL)


def test_failed_entry_and_another_old_event_is_expired() -> None:
    entry = _entry(Phase.FAILED, "e-1")
    decision = decide(_moment("e-2"), entry, OCCURRED + timedelta(seconds=MAX_AGE + 1), MAX_AGE)
    assert decision.verdict is Verdict.EXPIRED
    assert decision.status == "expired"


@given(
    st.none() | st.sampled_from(Phase),
    st.booleans(),
    st.integers(-3600, 3600),
)
def test_decide_never_calls_while_a_recording_may_exist(phase: Phase | None, same_event: bool, age: int) -> None:
    entry = None if phase is None else _entry(phase, "e-1")
    decision = decide(_moment("e-1" if same_event else "e-2"), entry, OCCURRED + timedelta(seconds=age), MAX_AGE)
    if phase in (Phase.STARTED, Phase.IN_DOUBT, Phase.INTENT):
        assert decision.verdict is Verdict.ANSWER
        assert decision.entry is entry
    elif phase in (Phase.FAILED, Phase.SKIPPED) and same_event:
        assert decision == Decision(Verdict.ANSWER, phase.value, entry)
    else:
        assert decision.verdict is (Verdict.EXPIRED if age > MAX_AGE else Verdict.CALL)


# --- recordings: their span, and how long their entries are kept ---------------------------------------------

# Whole seconds between 2000 and 2090, as an aware instant (the wall clock the API reads is CST).
cst_times = st.integers(946_684_800, 3_786_825_600).map(lambda s: datetime.fromtimestamp(s, UTC))


@given(phase=st.sampled_from(Phase), event_id=texts, start=cst_times, length=st.integers(1, 1800), message=texts)
def test_the_span_read_from_raw_bytes_equals_the_decoded_entrys(
    phase: Phase, event_id: str, start: datetime, length: int, message: str
) -> None:
    window = (format_cst(start), format_cst(start + timedelta(seconds=length)))
    entry = Entry(phase, event_id, *window, error_message=message)
    span = dedup.recording_span(entry)
    assert dedup.recording_span(dedup.encode_entry(entry)) == span
    if phase in (Phase.STARTED, Phase.IN_DOUBT, Phase.INTENT):
        assert span == (start.timestamp(), start.timestamp() + length)
    else:
        assert span is None


def test_an_event_id_quoting_the_marks_cannot_forge_a_span() -> None:
    forged = '"phase":"started","event_id":"x","start_time":"2020-01-01 00:00:00","end_time":"2020-01-01 00:05:00"'
    raw = dedup.encode_entry(Entry(Phase.FAILED, forged, "2024-05-01 20:15:00", "2024-05-01 20:20:00"))
    assert dedup.recording_span(raw) is None
    started = dedup.encode_entry(Entry(Phase.STARTED, forged, "2024-05-01 20:15:00", "2024-05-01 20:20:00"))
    assert dedup.recording_span(started) == (
        datetime(2024, 5, 1, 12, 15, tzinfo=UTC).timestamp(),
        datetime(2024, 5, 1, 12, 20, tzinfo=UTC).timestamp(),
    )


def test_an_entry_without_a_window_has_no_span() -> None:
    assert dedup.recording_span(b'{"phase":"started","event_id":"e","task_id":"7"}') is None
    assert dedup.recording_span(Entry(Phase.STARTED, "e", task_id="7")) is None


BUCKET = OCCURRED.timestamp() // 300  # 20:15:00 CST, the start of its bucket


def _keep(entry: Entry, *, keep_days: bool, clip_wait: int = 0) -> float:
    key = ("ch", int(BUCKET))
    rules = {"bucket_seconds": 300, "max_event_age_seconds": MAX_AGE, "keep_days": keep_days}
    kept = dedup.keep_until(key, entry, **rules, clip_wait_seconds=clip_wait)  # type: ignore[arg-type]  # the test's own keyword arguments
    assert kept == dedup.keep_until(
        key,
        dedup.encode_entry(entry),
        **rules,  # type: ignore[arg-type]  # the test's own keyword arguments
        clip_wait_seconds=clip_wait,
    ), "raw bytes and the decoded entry are kept alike"
    return kept


def test_an_entry_that_is_no_recording_is_kept_as_long_as_its_key_says() -> None:
    failed = Entry(Phase.FAILED, "e", "2024-05-01 20:15:00", "2024-05-01 20:45:00")
    assert _keep(failed, keep_days=True) == dedup.expires_at(int(BUCKET), 300, MAX_AGE)


def test_a_recording_is_kept_until_its_window_ended_and_no_live_moment_can_fall_in_it() -> None:
    long_one = Entry(Phase.STARTED, "e", "2024-05-01 20:15:00", "2024-05-01 20:45:00", task_id="1")
    end = datetime(2024, 5, 1, 12, 45, tzinfo=UTC).timestamp()
    assert _keep(long_one, keep_days=False) == end + MAX_AGE + dedup.EXPIRY_GRACE_SECONDS
    short = Entry(Phase.IN_DOUBT, "e", "2024-05-01 20:15:00", "2024-05-01 20:16:00")
    assert _keep(short, keep_days=False) == dedup.expires_at(int(BUCKET), 300, MAX_AGE), "never less than the key"


def test_with_a_daily_limit_a_recording_is_kept_until_its_cst_day_is_over() -> None:
    intent = Entry(Phase.INTENT, "e", "2024-05-01 20:15:00", "2024-05-01 20:20:00")
    midnight = datetime(2024, 5, 1, 16, 0, tzinfo=UTC).timestamp()  # 2024-05-02 00:00:00 CST
    assert _keep(intent, keep_days=True) == midnight + dedup.EXPIRY_GRACE_SECONDS


def test_a_recording_is_kept_until_its_files_are_no_longer_awaited() -> None:
    recording = Entry(Phase.STARTED, "e", "2024-05-01 20:15:00", "2024-05-01 20:20:00", task_id="1")
    end = datetime(2024, 5, 1, 12, 20, tzinfo=UTC).timestamp()
    assert _keep(recording, keep_days=False, clip_wait=3600) == end + 3600 + dedup.EXPIRY_GRACE_SECONDS
    doubt = Entry(Phase.IN_DOUBT, "e", "2024-05-01 20:15:00", "2024-05-01 20:20:00", clipped_files=("f",))
    assert _keep(doubt, keep_days=False, clip_wait=3600) == end + 3600 + dedup.EXPIRY_GRACE_SECONDS
    assert _keep(recording, keep_days=False, clip_wait=10) == end + MAX_AGE + dedup.EXPIRY_GRACE_SECONDS, (
        "never shorter than a recording is kept anyway"
    )
    failed = Entry(Phase.FAILED, "e", "2024-05-01 20:15:00", "2024-05-01 20:20:00")
    assert _keep(failed, keep_days=False, clip_wait=3600) == dedup.expires_at(int(BUCKET), 300, MAX_AGE), (
        "no recording, no files to wait for"
    )


@given(
    offset=st.integers(0, 299),
    delay=st.integers(0, MAX_AGE + 600),
    length=st.integers(300, 1800),
    clip_wait=st.integers(0, 7 * 86_400),
)
def test_a_recording_outlives_its_window_by_the_clip_wait(offset: int, delay: int, length: int, clip_wait: int) -> None:
    start = datetime.fromtimestamp(BUCKET * 300 + offset + delay, UTC)
    end = start + timedelta(seconds=length)
    recording = Entry(Phase.STARTED, "e", format_cst(start), format_cst(end), task_id="1")
    assert _keep(recording, keep_days=False, clip_wait=clip_wait) >= end.timestamp() + clip_wait
