"""The decision in both dedup modes (highlight.dedup.decide_among): coverage, keys, redelivery, mode switches."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight.dedup import (
    BUCKET_MODE,
    RECORDING_PHASES,
    WINDOW_MODE,
    DedupKey,
    DedupRules,
    Entry,
    Phase,
    Verdict,
    bucket_key,
    covers,
    decide_among,
    decode_key,
    encode_key,
    recording_span,
    window_key,
)
from highlight.moment import Moment
from highlight.recording import format_cst

BUCKET = 300
MIN_COVER = 60
MAX_AGE = 120
NOON = datetime(2024, 5, 1, 4, 0, 0, tzinfo=UTC)  # 12:00:00 in China, the start of a 5-minute bucket


def rules(mode: str) -> DedupRules:
    return DedupRules(mode, BUCKET, MIN_COVER, MAX_AGE)


def at(seconds: float) -> datetime:
    return NOON + timedelta(seconds=seconds)


def moment(event_id: str, seconds: float, channel: str = "ch") -> Moment:
    instant = at(seconds)
    return Moment(event_id=event_id, channel_id=channel, occurred_at=instant, occurred_at_text=instant.isoformat())


def recording(event_id: str, start: float, length: float = 300, phase: Phase = Phase.STARTED) -> Entry:
    return Entry(phase, event_id, format_cst(at(start)), format_cst(at(start + length)), task_id="1", attempts=1)


def window_entry(event_id: str, started: float, length: float = 300, phase: Phase = Phase.STARTED) -> tuple:
    """A window-mode recording started by a moment at `started`, keyed as window mode keys it."""
    return window_key(moment(event_id, started), BUCKET), recording(event_id, started, length, phase)


# --- the examples ------------------------------------------------------------------------------------------


def test_a_recording_covering_a_moment_for_less_than_min_cover_leaves_it_a_new_recording_in_the_same_bucket() -> None:
    key, entry = window_entry("first", 0)  # 12:00:00 to 12:05:00
    late = moment("late", 270)  # 12:04:30: covered for 30 s only
    decision = decide_among(late, {key: entry}, at(271), rules(WINDOW_MODE))
    assert decision.verdict is Verdict.CALL
    assert decision.key == ("ch", NOON.timestamp() // BUCKET, "late")
    assert decision.key != key, "a second recording in the same bucket: its own key"


def test_a_recording_covering_a_moment_for_min_cover_makes_it_a_duplicate() -> None:
    key, entry = window_entry("first", 0)
    decision = decide_among(moment("m", 240), {key: entry}, at(241), rules(WINDOW_MODE))
    assert (decision.verdict, decision.status, decision.key, decision.entry) == (
        Verdict.ANSWER,
        "duplicate",
        key,
        entry,
    )


def test_window_mode_makes_one_recording_across_a_bucket_boundary_where_bucket_mode_makes_two() -> None:
    key, entry = window_entry("before", 290)  # 12:04:50, in the 12:00 bucket
    after = moment("after", 310)  # 12:05:10, in the 12:05 bucket
    assert decide_among(after, {key: entry}, at(311), rules(WINDOW_MODE)).status == "duplicate"
    bucket_entry = {bucket_key(moment("before", 290), BUCKET): recording("before", 290)}
    decision = decide_among(after, bucket_entry, at(311), rules(BUCKET_MODE))
    assert decision.verdict is Verdict.CALL
    assert decision.key == bucket_key(after, BUCKET)


def test_the_earliest_starting_covering_recording_answers() -> None:
    first, second = window_entry("a", 0, 600), window_entry("b", 100, 600)
    entries = dict([second, first])
    decision = decide_among(moment("m", 150), entries, at(151), rules(WINDOW_MODE))
    assert decision.entry is not None
    assert decision.entry.event_id == "a"


def test_an_in_doubt_recording_that_covers_a_moment_makes_it_in_doubt_never_a_call() -> None:
    key, entry = window_entry("cut", 0, phase=Phase.IN_DOUBT)
    decision = decide_among(moment("m", 100), {key: entry}, at(101), rules(WINDOW_MODE))
    assert (decision.status, decision.key) == ("in_doubt", key)


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.SKIPPED])
def test_a_recording_that_never_started_covers_nothing_but_answers_its_own_moment(phase: Phase) -> None:
    key, entry = window_entry("first", 0, phase=phase)
    assert decide_among(moment("other", 10), {key: entry}, at(11), rules(WINDOW_MODE)).verdict is Verdict.CALL
    own = decide_among(moment("first", 0), {key: entry}, at(500), rules(WINDOW_MODE))
    assert (own.status, own.key) == (phase.value, key)


def test_a_moment_too_old_to_record_is_not_covered_by_a_recording_started_after_that() -> None:
    key, entry = window_entry("later", 200)
    decision = decide_among(moment("old", 0), {key: entry}, at(201), rules(WINDOW_MODE))
    assert decision.verdict is Verdict.EXPIRED


def test_other_channels_entries_never_answer() -> None:
    key, entry = window_entry("x", 0)
    decision = decide_among(moment("m", 10, channel="other"), {key: entry}, at(11), rules(WINDOW_MODE))
    assert decision.verdict is Verdict.CALL


# --- switching modes -------------------------------------------------------------------------------------------


def test_after_switching_to_window_a_bucket_key_with_a_recording_answers_as_bucket_mode_did() -> None:
    started = moment("first", 0)
    entries = {bucket_key(started, BUCKET): recording("first", 0)}
    late = moment("late", 270)  # covered for 30 s only, but bucket mode answered it duplicate
    assert decide_among(late, entries, at(271), rules(BUCKET_MODE)).status == "duplicate"
    assert decide_among(late, entries, at(271), rules(WINDOW_MODE)).status == "duplicate"
    assert decide_among(started, entries, at(271), rules(WINDOW_MODE)).status == "started"


def test_after_switching_to_window_a_bucket_mode_recording_covers_moments_of_the_next_bucket() -> None:
    entries = {bucket_key(moment("first", 290), BUCKET): recording("first", 290)}
    assert decide_among(moment("next", 310), entries, at(311), rules(WINDOW_MODE)).status == "duplicate"


def test_after_switching_to_bucket_a_window_mode_recording_still_covers_and_answers_its_own_moment() -> None:
    key, entry = window_entry("first", 290)
    covered = decide_among(moment("next", 310), {key: entry}, at(311), rules(BUCKET_MODE))
    assert (covered.status, covered.key) == ("duplicate", key)
    own = decide_among(moment("first", 290), {key: entry}, at(311), rules(BUCKET_MODE))
    assert (own.status, own.key) == ("started", key)


# --- keys ----------------------------------------------------------------------------------------------------


@given(st.text(), st.integers(-(2**40), 2**40), st.none() | st.text())
def test_bucket_and_window_keys_round_trip_and_never_collide(channel: str, bucket: int, event: str | None) -> None:
    key: DedupKey = (channel, bucket) if event is None else (channel, bucket, event)
    assert decode_key(encode_key(key)) == key
    if event is not None:
        assert encode_key((channel, bucket)) != encode_key(key)


@pytest.mark.parametrize("raw", [b'["a", 1, 2]', b'["a", 1, "e", "f"]', b'["a"]', b'["a", true, "e"]'])
def test_decode_key_rejects_other_shapes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a dedup key"):
        decode_key(raw)


# --- properties -----------------------------------------------------------------------------------------------

phases = st.sampled_from(list(Phase))
# (event id, seconds after noon its moment occurred, seconds after that its call started, length, phase, key kind)
recordings = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.integers(-900, 900),
        st.integers(0, 30),
        st.sampled_from([300, 600, 1800]),
        phases,
        st.sampled_from(["window", "bucket"]),
    ),
    max_size=8,
)


def build(specs: list[tuple[str, int, int, int, Phase, str]], now: float) -> dict[DedupKey, Entry]:
    """The entries of a history up to `now`: every recording started by then."""
    entries: dict[DedupKey, Entry] = {}
    for event, occurred, lag, length, phase, kind in specs:
        started = moment(event, min(occurred, now))
        key = window_key(started, BUCKET) if kind == "window" else bucket_key(started, BUCKET)
        entries[key] = recording(event, min(occurred + lag, now), length, phase)
    return entries


def covering(entries: dict[DedupKey, Entry], m: Moment, *, window_keys_only: bool) -> bool:
    instant = m.occurred_at.timestamp()
    for key, entry in entries.items():
        span = recording_span(entry)
        if window_keys_only and len(key) != 3:
            continue
        if entry.phase in RECORDING_PHASES and span and covers(span, instant, MIN_COVER, MAX_AGE):
            return True
    return False


@given(recordings, st.integers(-900, 900), st.integers(0, 200), st.sampled_from([WINDOW_MODE, BUCKET_MODE]))
def test_no_mode_calls_for_a_moment_that_an_existing_recording_covers(
    specs: list[tuple[str, int, int, int, Phase, str]], occurred: int, delay: int, mode: str
) -> None:
    entries = build(specs, occurred + delay)
    m = moment("new", occurred)
    decision = decide_among(m, entries, at(occurred + delay), rules(mode))
    own_bucket = entries.get(bucket_key(m, BUCKET))
    if decision.verdict is Verdict.CALL:
        assert not covering(entries, m, window_keys_only=mode == BUCKET_MODE)
        assert own_bucket is None or own_bucket.phase not in RECORDING_PHASES
        # Only an entry that records nothing (another moment's failed or skipped key) is ever replaced.
        replaced = entries.get(decision.key) if decision.key is not None else None
        assert replaced is None or replaced.phase not in RECORDING_PHASES
        assert decision.key == (window_key(m, BUCKET) if mode == WINDOW_MODE else bucket_key(m, BUCKET))
    else:
        assert decision.key is None or decision.key in entries


@given(
    recordings,
    recordings,
    st.integers(-900, 900),
    st.integers(0, 200),
    st.sampled_from([WINDOW_MODE, BUCKET_MODE]),
    phases,
    st.randoms(use_true_random=False),
)
def test_a_redelivered_moment_gets_its_first_answer_whatever_was_recorded_since(
    before: list[tuple[str, int, int, int, Phase, str]],
    since: list[tuple[str, int, int, int, Phase, str]],
    occurred: int,
    delay: int,
    mode: str,
    outcome: Phase,
    rng: random.Random,
) -> None:
    now = occurred + delay
    entries = build(before, now)
    m = moment("new", occurred)
    first = decide_among(m, entries, at(now), rules(mode))
    if first.verdict is Verdict.CALL:
        assert first.key is not None
        entries[first.key] = recording(m.event_id, now, 300, outcome)
        expected_status = {Phase.INTENT: "in_doubt"}.get(outcome, outcome.value)
        expected: tuple[str | None, str | None] = (expected_status, m.event_id)
    else:
        expected = (first.status, None if first.entry is None else first.entry.event_id)
    # Recordings made since start after the first decision (moments of one channel run in order, and a new one
    # starts after any recording that covered the one before: HIGHLIGHT_MIN_COVER_SECONDS is below the shortest
    # recording), and their keys are other moments' keys (their own event ids).
    for event, occurred_later, lag, length, phase, kind in since:
        later = moment(f"later-{event}", max(occurred_later, now))
        key = window_key(later, BUCKET) if kind == "window" else bucket_key(later, BUCKET)
        if key not in entries:
            entries[key] = recording(later.event_id, max(occurred_later, now) + 1 + lag, length, phase)
    shuffled = list(entries.items())
    rng.shuffle(shuffled)
    again = decide_among(m, dict(shuffled), at(now + 30), rules(mode))
    assert (again.status, None if again.entry is None else again.entry.event_id) == expected


# --- the decision as first written, against the one made cheaper ----------------------------------------------


def _decide_as_written(m: Moment, candidates: dict[DedupKey, Entry], now: datetime, rules: DedupRules) -> tuple:
    """`decide_among` as it was written before it was made cheaper (one frozen dataclass per step, the keys built
    by their helpers), kept here as the oracle: (verdict, status, entry, key)."""
    own_status = {
        Phase.STARTED: "started",
        Phase.INTENT: "in_doubt",
        Phase.IN_DOUBT: "in_doubt",
        Phase.FAILED: "failed",
        Phase.SKIPPED: "skipped",
    }
    by_bucket = bucket_key(m, rules.bucket_seconds)
    mine = window_key(m, rules.bucket_seconds)
    for key in (by_bucket, mine):
        entry = candidates.get(key)
        if entry is not None and entry.event_id == m.event_id:
            return Verdict.ANSWER, own_status[entry.phase], entry, key
    instant = m.occurred_at.timestamp()
    best: tuple[float, DedupKey, Entry] | None = None
    for key, entry in candidates.items():
        if key[0] != m.channel_id or entry.phase not in RECORDING_PHASES:
            continue
        span = recording_span(entry)
        if key == by_bucket:
            if span is not None and span[0] > instant + rules.max_event_age_seconds:
                continue
            start = -math.inf if span is None else span[0]
        elif rules.mode == BUCKET_MODE and len(key) != 3:
            continue  # another bucket: bucket mode records it anew
        elif span is None or not covers(span, instant, rules.min_cover_seconds, rules.max_event_age_seconds):
            continue
        else:
            start = span[0]
        if best is None or (start, key) < (best[0], best[1]):
            best = (start, key, entry)
    if best is not None:
        status = "duplicate" if best[2].phase is Phase.STARTED else "in_doubt"
        return Verdict.ANSWER, status, best[2], best[1]
    if (now - m.occurred_at).total_seconds() > rules.max_event_age_seconds:
        return Verdict.EXPIRED, "expired", None, None
    return Verdict.CALL, None, None, by_bucket if rules.mode == BUCKET_MODE else mine


_oracle_entries = st.lists(
    st.tuples(
        st.sampled_from(["ch", "other"]),
        st.sampled_from([0, 0, 0, -1, 1]) | st.integers(-6, 6),  # the key's bucket, from the moment's
        st.sampled_from(["a", "b", "new", None]),  # a window key's event id; None: a bucket key
        st.sampled_from(["a", "b", "new"]),  # the entry's event id
        phases,
        st.none() | st.tuples(st.integers(-2000, 900), st.sampled_from([0, 30, 300, 1800])),  # its window
    ),
    max_size=8,
)


@settings(max_examples=1000)
@given(
    _oracle_entries,
    st.integers(-900, 900),
    st.sampled_from([MAX_AGE - 1, MAX_AGE, MAX_AGE + 1]) | st.integers(-30, 400),
    st.sampled_from([WINDOW_MODE, BUCKET_MODE]),
    st.sampled_from([60, 300]),
    st.sampled_from([0, 60]),
)
def test_the_decision_is_the_one_first_written_for_any_candidates(
    specs: list[tuple[str, int, str | None, str, Phase, tuple[int, int] | None]],
    occurred: int,
    delay: int,
    mode: str,
    bucket_seconds: int,
    min_cover: int,
) -> None:
    m = moment("new", occurred)
    own_bucket = m.bucket(bucket_seconds)
    candidates: dict[DedupKey, Entry] = {}
    for channel, offset, keyed_by, event, phase, window in specs:
        key: DedupKey = (channel, own_bucket + offset) if keyed_by is None else (channel, own_bucket + offset, keyed_by)
        start, end = (None, None) if window is None else (format_cst(at(window[0])), format_cst(at(sum(window))))
        candidates[key] = Entry(phase, event, start, end, task_id="7", attempts=1)
    now = at(occurred + delay)
    rules_now = DedupRules(mode, bucket_seconds, min_cover, MAX_AGE)
    assert tuple(decide_among(m, candidates, now, rules_now)) == _decide_as_written(m, candidates, now, rules_now)
