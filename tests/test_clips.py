"""Matching a recording file to a recording, and the clip event, pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from highlight import schemas
from highlight.callbacks.notification import RecordingFile
from highlight.clips import (
    CALL_SLACK_SECONDS,
    FUTURE_SKEW_SECONDS,
    Match,
    candidate_buckets,
    clip_document,
    encode_clip,
    match,
    seconds_after_window,
)
from highlight.dedup import DedupKey, Entry, Phase
from highlight.recording import MAX_RECORD_SECONDS, MIN_RECORD_SECONDS, format_cst

B = 300
MAX_AGE = 120
CHANNEL = "8888_test123"
T0 = 1_800_000_000  # a bucket boundary: 1_800_000_000 / 300 = 6_000_000


def cst(unix: int) -> str:
    return format_cst(datetime.fromtimestamp(unix, UTC))


def started(start: int, length: int = 300, *, task_id: str = "111", event_id: str = "e") -> Entry:
    return Entry(
        Phase.STARTED, event_id, cst(start), cst(start + length), task_id=task_id, attempts=1, api="live_tape_start"
    )


def in_doubt(start: int, length: int = 300, *, event_id: str = "d") -> Entry:
    return Entry(Phase.IN_DOUBT, event_id, cst(start), cst(start + length), error_code="read_timeout")


def file(
    start: int, end: int, *, task_id: str | None = None, channel: str = CHANNEL, **changes: object
) -> RecordingFile:
    fields: dict[str, object] = {
        "channel_id": channel,
        "file_id": f"f-{start}-{end}",
        "video_url": f"http://v.example.com/{start}.mp4",
        "start_time": start,
        "end_time": end,
        "task_id": task_id,
        "file_format": "mp4",
        "file_size": 1000,
        "duration": end - start,
    }
    return RecordingFile(**(fields | changes))  # type: ignore[arg-type]  # the test's own field values


def key(unix: int) -> DedupKey:
    return (CHANNEL, unix // B)


# --- matching ---------------------------------------------------------------------------------------


def test_a_task_id_equal_to_one_of_the_channels_recordings_matches_it_whatever_the_times() -> None:
    ours = started(T0, task_id="42")
    other = started(T0 + 10, task_id="43")
    found = match(file(T0 + 5000, T0 + 5300, task_id="42"), [(key(T0 + 10), other), (key(T0), ours)])
    assert found == Match(key(T0), ours, "task_id")


def test_without_a_known_task_id_the_largest_overlap_wins() -> None:
    first, second = started(T0, 1800, task_id="1"), started(T0 + 300, 1800, task_id="2")
    recordings = [(key(T0), first), (key(T0 + 300), second)]
    assert match(file(T0, T0 + 1800), recordings) == Match(key(T0), first, "window")
    assert match(file(T0 + 300, T0 + 2100, task_id="999"), recordings) == Match(key(T0 + 300), second, "window")


def test_a_started_recording_beats_an_in_doubt_one_of_equal_overlap_and_ties_go_to_the_earlier_window() -> None:
    doubt, sure = in_doubt(T0), started(T0 + 300)
    recordings = [(key(T0), doubt), (key(T0 + 300), sure)]
    assert match(file(T0 + 150, T0 + 450), recordings) == Match(key(T0 + 300), sure, "window")
    early, late = started(T0, task_id="1"), started(T0 + 300, task_id="2")
    assert match(file(T0 + 150, T0 + 450), [(key(T0 + 300), late), (key(T0), early)]).entry is early  # type: ignore[union-attr]


def test_an_in_doubt_recording_is_matched_by_window_only() -> None:
    doubt = in_doubt(T0)
    assert match(file(T0 + 10, T0 + 290), [(key(T0), doubt)]) == Match(key(T0), doubt, "window")
    assert match(file(T0 + 5000, T0 + 5300, task_id="111"), [(key(T0), doubt)]) is None


@pytest.mark.parametrize(
    "entry",
    [
        Entry(Phase.FAILED, "f", cst(T0), cst(T0 + 300), error_code="1301"),
        Entry(Phase.INTENT, "i", cst(T0), cst(T0 + 300)),
        Entry(Phase.STARTED, "s", None, None, task_id="5"),
        None,
    ],
    ids=["failed", "intent", "no-window", "no-entry"],
)
def test_recordings_that_never_ran_or_have_no_window_do_not_match(entry: Entry | None) -> None:
    assert match(file(T0, T0 + 300), [(key(T0), entry)]) is None


def test_a_file_that_meets_no_window_or_is_of_another_channel_or_a_template_matches_nothing() -> None:
    recordings = [(key(T0), started(T0, task_id="1"))]
    assert match(file(T0 + 300, T0 + 600), recordings) is None, "touching the end is no overlap"
    assert match(file(T0 - 300, T0), recordings) is None
    assert match(file(T0, T0 + 300, channel="other"), recordings) is None
    assert match(file(T0, T0 + 300, task_id="1", template=True), recordings) is None


def test_a_zero_length_file_inside_a_window_matches_it() -> None:
    ours = started(T0)
    assert match(file(T0 + 100, T0 + 100), [(key(T0), ours)]) == Match(key(T0), ours, "window")


window_starts = st.integers(-FUTURE_SKEW_SECONDS, B + MAX_AGE + CALL_SLACK_SECONDS)


@given(
    bucket=st.integers(5_000_000, 7_000_000),
    call_at=window_starts,
    length=st.integers(MIN_RECORD_SECONDS, MAX_RECORD_SECONDS),
    file_start=st.integers(-MAX_RECORD_SECONDS, MAX_RECORD_SECONDS),
    file_length=st.integers(0, 2 * MAX_RECORD_SECONDS),
)
def test_every_bucket_whose_recording_can_overlap_the_file_is_a_candidate(
    bucket: int, call_at: int, length: int, file_start: int, file_length: int
) -> None:
    # A recording of `bucket` whose call came `call_at` s after the bucket's start (before it: a moment stamped
    # ahead of our clock), lasting `length`; a file around it.
    window = (bucket * B + call_at, bucket * B + call_at + length)
    start = window[0] + file_start
    end = start + file_length
    assume(min(end, window[1]) - max(start, window[0]) > 0)
    assert bucket in candidate_buckets(file(start, end), B, MAX_AGE)


@given(start=st.integers(0, 2 * 10**9), length=st.integers(0, 10**6), size=st.integers(1, 3600))
def test_candidate_buckets_are_bounded(start: int, length: int, size: int) -> None:
    buckets = candidate_buckets(file(start, start + length), size, MAX_AGE)
    assert len(buckets) <= 4096


@given(
    windows=st.lists(
        st.tuples(st.integers(0, 3600), st.integers(MIN_RECORD_SECONDS, MAX_RECORD_SECONDS), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    file_start=st.integers(-1800, 5400),
    file_length=st.integers(0, 3600),
)
def test_a_window_match_is_a_recording_with_the_largest_overlap(
    windows: list[tuple[int, int, bool]], file_start: int, file_length: int
) -> None:
    recordings: list[tuple[DedupKey, Entry | None]] = [
        ((CHANNEL, index), started(T0 + offset, length, task_id=str(index)) if sure else in_doubt(T0 + offset, length))
        for index, (offset, length, sure) in enumerate(windows)
    ]
    the_file = file(T0 + file_start, T0 + file_start + file_length)

    def overlap(offset: int, length: int) -> int:
        return min(T0 + offset + length, the_file.end_time) - max(T0 + offset, the_file.start_time)

    overlaps = [overlap(offset, length) for offset, length, _ in windows]
    found = match(the_file, recordings)
    if found is None:
        assert all(o < 0 or (o == 0 and file_length > 0) for o in overlaps)
        return
    assert found.matched_by == "window"
    assert overlaps[found.key[1]] == max(overlaps)
    assert match(the_file, list(reversed(recordings))) == found, "the order the state gives them does not matter"


# --- the clip event -------------------------------------------------------------------------------------


def test_a_clip_carries_the_recording_as_its_result_did_and_the_file_as_the_notification_did() -> None:
    recording = started(T0 + 3, 300, task_id="16524440430269856708", event_id="evt-7f3a9c")
    the_file = file(T0 + 4, T0 + 301, task_id="16524440430269856708")
    document = clip_document(Match(key(T0), recording, "task_id"), the_file, B)
    assert document == {
        "channel_id": CHANNEL,
        "bucket": T0 // B,
        "bucket_seconds": B,
        "recording_status": "started",
        "task_id": "16524440430269856708",
        "started_by": "evt-7f3a9c",
        "api": "live_tape_start",
        "start_time": cst(T0 + 3),
        "end_time": cst(T0 + 303),
        "file_id": f"f-{T0 + 4}-{T0 + 301}",
        "video_url": f"http://v.example.com/{T0 + 4}.mp4",
        "file_format": "mp4",
        "file_size": 1000,
        "duration_seconds": 297,
        "file_start": "2027-01-15T08:00:04Z",
        "file_end": "2027-01-15T08:05:01Z",
        "matched_by": "task_id",
    }
    schemas.validator(schemas.CLIP_SCHEMA)(document)
    assert encode_clip(document) == encode_clip(clip_document(Match(key(T0), recording, "task_id"), the_file, B))


def test_a_clip_of_an_in_doubt_recording_takes_the_files_numeric_task_id() -> None:
    doubt = Entry(Phase.IN_DOUBT, "d", cst(T0), cst(T0 + 300), api="create_live_record")
    with_id = clip_document(Match(key(T0), doubt, "window"), file(T0, T0 + 300, task_id="77"), B)
    assert (with_id["recording_status"], with_id["task_id"], with_id["api"]) == ("in_doubt", "77", "create_live_record")
    without = clip_document(Match(key(T0), doubt, "window"), file(T0, T0 + 300, task_id="Task-x"), B)
    assert "task_id" not in without
    validate = schemas.validator(schemas.CLIP_SCHEMA)
    validate(with_id)
    validate(without)


def test_optional_file_fields_are_left_out_rather_than_invented() -> None:
    bare = file(T0, T0 + 300, file_format=None, file_size=None, duration=None)
    document = clip_document(Match(key(T0), started(T0), "window"), bare, B)
    assert not {"file_format", "file_size", "duration_seconds"} & document.keys()
    schemas.validator(schemas.CLIP_SCHEMA)(document)


def test_a_clip_without_a_task_id_for_a_started_recording_breaks_the_schema() -> None:
    document = clip_document(Match(key(T0), started(T0), "task_id"), file(T0, T0 + 300), B)
    del document["task_id"]
    with pytest.raises(schemas.ValidationError):
        schemas.validator(schemas.CLIP_SCHEMA)(document)


def test_the_delay_counts_from_the_windows_end_and_is_never_negative() -> None:
    recording = started(T0, 300)
    assert seconds_after_window(recording, T0 + 420) == 120
    assert seconds_after_window(recording, T0 + 100) == 0
