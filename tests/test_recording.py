"""What a recording is, whatever the API: CST wall-clock times, the 5..30 minute clamp, the window. Pure."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import recording
from highlight.recording import RecordingWindow

NOW = datetime(2024, 5, 1, 12, 15, 0, tzinfo=UTC)  # 20:15:00 in China Standard Time

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
    assert recording.format_cst(instant) == expected


def test_format_cst_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        recording.format_cst(datetime(2024, 5, 1, 12, 0, 0))  # noqa: DTZ001 -- the point of the test


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
        assert recording.format_cst(datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)) == "2024-01-15 20:00:00"
        window = recording.window_at(datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC), 300)
        assert window == RecordingWindow("2024-07-01 20:00:00", "2024-07-01 20:05:00")
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
    text = recording.format_cst(instant)
    assert text == expected.strftime("%Y-%m-%d %H:%M:%S")
    assert recording.parse_cst(text).timestamp() == instant.replace(microsecond=0).timestamp()


# --- clamping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("requested", "clamped"), [(60, 300), (7200, 1800), (900, 900), (300, 300), (1800, 1800)])
def test_clamp_record_seconds_keeps_real_time_recordings_between_5_and_30_minutes(requested: int, clamped: int) -> None:
    assert recording.clamp_record_seconds(requested) == clamped


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_clamp_record_seconds_is_always_within_bounds_and_identity_inside(requested: int) -> None:
    result = recording.clamp_record_seconds(requested)
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
    window = recording.window_at(now, record_seconds)
    start, end = recording.parse_cst(window.start_time), recording.parse_cst(window.end_time)
    assert (end - start).total_seconds() == recording.clamp_record_seconds(record_seconds)
    assert window.start_time == recording.format_cst(now)


@pytest.mark.parametrize("record_seconds", [300, 900, 1800])
def test_window_at_in_utc_spans_exactly_the_clamped_length(record_seconds: int) -> None:
    window = recording.window_at(NOW, record_seconds)
    assert window.start_time == "2024-05-01 20:15:00"
    assert recording.parse_cst(window.end_time) - recording.parse_cst(window.start_time) == timedelta(
        seconds=record_seconds
    )


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
    window = recording.window_at(now, record_seconds)
    assert window.end_time == end_time
    assert recording.parse_cst(window.end_time) - recording.parse_cst(window.start_time) == timedelta(
        seconds=record_seconds
    )
