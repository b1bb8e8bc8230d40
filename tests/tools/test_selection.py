"""Which dead letters a replay takes (highlight.tools.selection): reading the flags, matching, the tally. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.dead_letters import DEAD_LETTER_REASONS
from highlight.errors import ConfigError
from highlight.kafka import Record
from highlight.tools.selection import (
    NO_REASON,
    Selection,
    SelectionError,
    Tally,
    describe,
    reason_shown,
    record_time,
    selection_from,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
offsets = st.integers(min_value=0, max_value=2**40)
millis = st.integers(min_value=0, max_value=4_102_444_800_000)  # up to 2100
zones = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])


def _record(offset: int = 0, reason: str | None = "too_large", timestamp_ms: int = 0, **changes: object) -> Record:
    headers = (("trace", b"t"),) + ((("highlight.dlq.reason", reason.encode()),) if reason else ())
    fields: dict[str, object] = {
        "topic": "m.dlq",
        "partition": 0,
        "offset": offset,
        "key": b"ch-1",
        "value": b"{}",
        "headers": headers,
        "timestamp_ms": timestamp_ms,
    }
    return Record(**(fields | changes))  # type: ignore[arg-type]  # the fields of Record, by name


def _error(**flags: object) -> str:
    with pytest.raises(SelectionError) as caught:
        selection_from(**flags)  # type: ignore[arg-type]  # the flags of selection_from, by name
    message = str(caught.value)
    assert "\n" not in message, "one line"
    return message


# --- reading the flags --------------------------------------------------------------------------------------------


def test_no_flags_select_every_dead_letter() -> None:
    selection = selection_from()
    assert selection == Selection()
    assert selection.partitions(3) == [0, 1, 2]
    assert not selection.before_range(0)
    assert not selection.past_range(2**62)
    assert selection.takes(None, 0)
    assert all(selection.takes(reason, 123) for reason in DEAD_LETTER_REASONS)


def test_every_flag_is_read() -> None:
    selection = selection_from(
        reasons=["too_large", "invalid_json"],
        partition="2",
        from_offset="10",
        to_offset="20",
        since="2026-11-22T20:00:00+08:00",
        until="2026-11-22T21:00:00Z",
        limit="5",
    )
    assert selection == Selection(
        reasons=frozenset({"too_large", "invalid_json"}),
        partition=2,
        from_offset=10,
        to_offset=20,
        since=datetime(2026, 11, 22, 12, tzinfo=UTC),
        until=datetime(2026, 11, 22, 21, tzinfo=UTC),
        limit=5,
    )


def test_a_selection_error_is_a_config_error_so_the_cli_exits_2_with_one_line() -> None:
    assert issubclass(SelectionError, ConfigError)


@given(st.text(max_size=20).filter(lambda text: text not in DEAD_LETTER_REASONS))
def test_an_unknown_reason_is_refused_naming_every_known_one(reason: str) -> None:
    message = _error(reasons=["too_large", reason])
    assert message.startswith(f"--reason {reason!r} is not a dead-letter reason")
    assert all(known in message for known in DEAD_LETTER_REASONS)


@pytest.mark.parametrize("flag", ["partition", "from_offset", "to_offset", "limit"])
@pytest.mark.parametrize("raw", ["-1", "x", "1.5", "", " ", "١٢", "1_000"])
def test_a_count_that_is_not_a_non_negative_integer_is_refused_naming_its_flag(flag: str, raw: str) -> None:
    message = _error(**{flag: raw})
    assert message.startswith(f"--{flag.replace('_', '-')} must be an integer >=")
    assert repr(raw) in message


def test_a_limit_of_zero_selects_nothing_and_is_refused() -> None:
    assert _error(limit="0") == "--limit must be an integer >= 1, got '0'"


@pytest.mark.parametrize("flag", ["since", "until"])
@pytest.mark.parametrize(
    "raw", ["yesterday", "2026-11-22", "2026-11-22T20:00:00", "2026-13-01T00:00:00Z", "1700000000"]
)
def test_a_time_that_is_not_rfc3339_with_an_offset_is_refused_naming_its_flag(flag: str, raw: str) -> None:
    message = _error(**{flag: raw})
    assert message.startswith(f"--{flag} must be an RFC 3339 time with an offset")
    assert repr(raw) in message


@given(offsets, offsets)
def test_an_inverted_offset_range_is_refused_and_any_other_is_read(first: int, last: int) -> None:
    if first > last:
        message = _error(from_offset=str(first), to_offset=str(last))
        assert message == f"--from-offset {first} is after --to-offset {last}: the range is empty"
    else:
        selection = selection_from(from_offset=str(first), to_offset=str(last))
        assert (selection.from_offset, selection.to_offset) == (first, last)


@given(millis, millis, zones, zones)
def test_an_empty_or_inverted_time_range_is_refused_and_any_other_is_read(
    since_ms: int, until_ms: int, since_zone: timezone, until_zone: timezone
) -> None:
    since = record_time(since_ms).astimezone(since_zone).isoformat()
    until = record_time(until_ms).astimezone(until_zone).isoformat()
    if since_ms >= until_ms:
        assert _error(since=since, until=until) == (
            f"--since {since} is not before --until {until}: the time range is empty"
        )
    else:
        selection = selection_from(since=since, until=until)
        assert selection.since == record_time(since_ms)
        assert selection.until == record_time(until_ms)


def test_a_partition_the_topic_does_not_have_is_refused_with_the_range_it_has() -> None:
    with pytest.raises(SelectionError) as caught:
        Selection(partition=3).partitions(3)
    assert str(caught.value) == "--partition 3 does not exist: the dead-letter topic has 3 partitions (0..2)"
    assert Selection(partition=2).partitions(3) == [2]


# --- matching -----------------------------------------------------------------------------------------------------


@given(offsets, st.none() | offsets, offsets)
def test_offsets_are_selected_inclusively_at_both_ends(first: int, last: int | None, offset: int) -> None:
    if last is not None and last < first:
        return
    selection = Selection(from_offset=first, to_offset=last)
    inside = first <= offset and (last is None or offset <= last)
    assert inside == (not selection.before_range(offset) and not selection.past_range(offset))
    assert selection.before_range(offset) == (offset < first)


@given(millis, millis, millis)
def test_record_time_is_selected_from_since_included_to_until_excluded(since: int, until: int, at: int) -> None:
    selection = Selection(since=record_time(since), until=record_time(until))
    assert selection.takes("too_large", at) == (since <= at < until)


@given(st.frozensets(st.sampled_from(DEAD_LETTER_REASONS)), st.none() | st.sampled_from(DEAD_LETTER_REASONS))
def test_reasons_select_exactly_their_dead_letters(reasons: frozenset[str], reason: str | None) -> None:
    taken = Selection(reasons=reasons).takes(reason, 0)
    assert taken == (not reasons or reason in reasons)


def test_a_dead_letter_without_a_reason_is_taken_only_when_no_reason_is_asked_for() -> None:
    record = _record(reason=None)
    assert reason_shown(record) == NO_REASON
    assert Selection().takes(reason_shown(record), 0)
    assert not Selection(reasons=frozenset(DEAD_LETTER_REASONS)).takes(reason_shown(record), 0)


def test_record_time_is_exact_to_the_millisecond() -> None:
    assert record_time(1) == EPOCH + timedelta(milliseconds=1)
    boundary = Selection(since=record_time(1_700_000_000_123))
    assert boundary.takes(None, 1_700_000_000_123)
    assert not boundary.takes(None, 1_700_000_000_122)


# --- the tally and the lines --------------------------------------------------------------------------------------


def test_the_summary_counts_selected_replayed_and_skipped_by_reason() -> None:
    tally = Tally()
    tally.selected.update({"too_large": 3})
    tally.replayed.update({"too_large": 3})
    tally.skipped.update({"invalid_json": 2, NO_REASON: 1})
    assert tally.taken == 3
    assert tally.summary("m.dlq", "m", dry_run=False) == [
        "m.dlq: 3 selected, 3 replayed to m, 3 skipped",
        "  reason        selected  replayed  skipped",
        "  (none)               0         0        1",
        "  invalid_json         0         0        2",
        "  too_large            3         3        0",
    ]


def test_the_summary_says_how_many_selected_records_could_not_be_replayed() -> None:
    tally = Tally()
    tally.selected.update({"too_large": 2})
    tally.replayed.update({"too_large": 1})
    tally.unreplayable.update({"too_large": 1})
    assert (
        tally.summary("m.dlq", "m", dry_run=False)[0]
        == "m.dlq: 2 selected, 1 replayed to m, 1 not replayable, 0 skipped"
    )


def test_a_dry_run_summary_says_nothing_was_published() -> None:
    tally = Tally()
    tally.selected.update({"too_large": 1})
    assert tally.summary("m.dlq", "m", dry_run=True)[0] == "m.dlq: 1 selected, nothing published (dry run), 0 skipped"


def test_an_empty_summary_is_one_line() -> None:
    assert Tally().summary("m.dlq", "m", dry_run=False) == ["m.dlq: 0 selected, 0 replayed to m, 0 skipped"]


def test_a_dead_letter_is_described_on_one_line_whatever_its_key() -> None:
    assert describe(_record(offset=7)) == "m.dlq/0@7 (too_large, key 'ch-1', 2 bytes)"
    assert describe(_record(key=None, value=None, reason=None)) == "m.dlq/0@0 ((none), no key, no value)"
    long_key = describe(_record(key=b"k" * 100 + b"\n\xff"))
    assert "\n" not in long_key
    assert "…" in long_key
