"""The recording budget (highlight.budget): shares, the reserve, counts kept incrementally, the CST day. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.budget import (
    DAILY_LIMIT,
    DEFAULT_FULL_SECONDS,
    RUNNING_LIMIT,
    Budget,
    Charge,
    Ledger,
    Limits,
    part,
    reserve,
)
from highlight.recording import CST, cst_day_number, next_cst_midnight

# 2024-05-01 20:15:00 in China Standard Time.
NOW = datetime(2024, 5, 1, 12, 15, tzinfo=UTC).timestamp()
# One second before midnight in China, 2024-05-02 00:00:00 CST.
BEFORE_MIDNIGHT = datetime(2024, 5, 1, 23, 59, 59, tzinfo=CST).timestamp()


def limits(running: int = 10, daily: int = 0, *, share: float = 0.0, priority: int = 80) -> Limits:
    return Limits(running=running, daily=daily, reserved_share=share, reserved_priority=priority)


def owning(budget: Budget, *indexes: int, now: float = NOW) -> Budget:
    for index in indexes:
        budget.restore(index, [], now)
    return budget


def start(budget: Budget, index: int, key: str, now: float = NOW, seconds: float = 300) -> None:
    budget.record(index, key, Charge(now, now + seconds), now)


# --- shares ----------------------------------------------------------------------------------------------


@given(st.integers(0, 100_000), st.integers(1, 500))
def test_the_parts_of_all_partitions_add_up_to_exactly_the_limit(total: int, partitions: int) -> None:
    parts = [part(total, i, partitions) for i in range(partitions)]
    assert sum(parts) == total
    assert max(parts) - min(parts) <= 1


@pytest.mark.parametrize(
    ("limit", "share", "expected"), [(400, 0.1, 40), (10, 0.1, 1), (5, 0.1, 1), (10, 0.0, 0), (3, 1.0, 3), (10, 0.3, 3)]
)
def test_the_reserve_is_the_last_share_of_a_limit_rounded_up(limit: int, share: float, expected: int) -> None:
    assert reserve(limit, share) == expected


def test_an_instance_spends_the_parts_of_the_partitions_it_owns_pooled() -> None:
    # 10 over 4 partitions: 3, 3, 2, 2.
    budget = owning(Budget(limits(10), partitions=4), 0, 2)
    assert budget.usage(RUNNING_LIMIT, NOW).share == 5
    for n in range(5):
        assert budget.room(50, NOW) is None
        start(budget, 0, f"k{n}")  # all on one partition: pooled with partition 2's part
    assert budget.room(50, NOW) == RUNNING_LIMIT


def test_the_share_moves_with_partitions_on_a_rebalance() -> None:
    budget = owning(Budget(limits(10), partitions=4), 0, 1, 2, 3)
    assert budget.usage(RUNNING_LIMIT, NOW).share == 10
    budget.release(3)
    budget.release(2)
    assert budget.usage(RUNNING_LIMIT, NOW).share == 6
    assert budget.owned == {0, 1}


def test_an_instance_that_owns_no_partition_has_no_room_and_a_limit_of_zero_is_none() -> None:
    assert Budget(limits(10), partitions=4).room(50, NOW) == RUNNING_LIMIT
    unlimited = owning(Budget(limits(0, 0), partitions=1), 0)
    for n in range(50):
        start(unlimited, 0, f"k{n}")
    assert unlimited.room(0, NOW) is None
    assert not unlimited.usage(RUNNING_LIMIT, NOW).limited


def test_a_partition_whose_part_is_zero_gives_no_room() -> None:
    budget = owning(Budget(limits(2), partitions=4), 3)
    assert budget.usage(RUNNING_LIMIT, NOW).share == 0
    assert budget.room(100, NOW) == RUNNING_LIMIT


# --- the reserve -------------------------------------------------------------------------------------------


def test_only_high_priority_moments_may_use_the_reserve() -> None:
    budget = owning(Budget(limits(10, share=0.2, priority=80), partitions=1), 0)
    for n in range(8):
        start(budget, 0, f"k{n}")
    assert budget.room(79, NOW) == RUNNING_LIMIT
    assert budget.room(80, NOW) is None
    start(budget, 0, "k8")
    start(budget, 0, "k9")
    assert budget.room(100, NOW) == RUNNING_LIMIT


def test_the_daily_reserve_works_like_the_running_one() -> None:
    budget = owning(Budget(limits(0, 10, share=0.1), partitions=1), 0)
    for n in range(9):
        start(budget, 0, f"k{n}", seconds=1)
    later = NOW + 60  # none running any more: only the day's count is left
    assert budget.room(50, later) == DAILY_LIMIT
    assert budget.room(90, later) is None


def test_a_full_day_is_named_before_a_full_running_share() -> None:
    budget = owning(Budget(limits(1, 1), partitions=1), 0)
    start(budget, 0, "k")
    assert budget.room(50, NOW) == DAILY_LIMIT


# --- the CST day -------------------------------------------------------------------------------------------


def test_the_daily_count_resets_at_midnight_in_china() -> None:
    budget = owning(Budget(limits(0, 2), partitions=1), 0, now=BEFORE_MIDNIGHT)
    start(budget, 0, "a", BEFORE_MIDNIGHT - 30)
    start(budget, 0, "b", BEFORE_MIDNIGHT - 1)
    assert budget.room(50, BEFORE_MIDNIGHT) == DAILY_LIMIT
    midnight = next_cst_midnight(BEFORE_MIDNIGHT)
    assert datetime.fromtimestamp(midnight, CST).strftime("%H:%M:%S") == "00:00:00"
    assert budget.next_change(BEFORE_MIDNIGHT) == midnight
    assert budget.usage(DAILY_LIMIT, midnight).in_use == 0
    assert budget.room(50, midnight) is None


def test_a_recording_counts_on_the_day_its_window_started_not_the_day_it_ends() -> None:
    budget = owning(Budget(limits(0, 5), partitions=1), 0, now=BEFORE_MIDNIGHT)
    start(budget, 0, "across", BEFORE_MIDNIGHT - 10, seconds=1800)
    assert budget.usage(DAILY_LIMIT, BEFORE_MIDNIGHT).in_use == 1
    assert budget.usage(DAILY_LIMIT, BEFORE_MIDNIGHT + 60).in_use == 0


# --- holds and durable charges ----------------------------------------------------------------------------


def test_a_held_slot_counts_until_released_even_while_the_entry_says_nothing() -> None:
    budget = owning(Budget(limits(1), partitions=1), 0)
    budget.hold(0, "k", Charge(NOW, NOW + 300), NOW)
    assert budget.room(50, NOW) == RUNNING_LIMIT
    start(budget, 0, "k")  # the intent: the same key counts once
    assert budget.usage(RUNNING_LIMIT, NOW).in_use == 1
    budget.record(0, "k", None, NOW)  # withdrawn while the moment waits out an outage: still held
    assert budget.usage(RUNNING_LIMIT, NOW).in_use == 1
    budget.unhold(0, "k", NOW)
    assert budget.room(50, NOW) is None


def test_a_recording_stops_counting_as_running_when_its_window_ends() -> None:
    budget = owning(Budget(limits(1), partitions=1), 0)
    start(budget, 0, "k", seconds=300)
    assert budget.room(50, NOW + 299) == RUNNING_LIMIT
    assert budget.next_change(NOW) == NOW + 300
    assert budget.room(50, NOW + 300) is None


def test_restored_charges_count_like_incremental_ones() -> None:
    budget = Budget(limits(5, 5), partitions=2)
    budget.restore(1, [("a", Charge(NOW - 100, NOW + 200)), ("b", Charge(NOW - 900, NOW - 600))], NOW)
    assert budget.usage(RUNNING_LIMIT, NOW).in_use == 1
    assert budget.usage(DAILY_LIMIT, NOW).in_use == 2


# --- the API's own limit answer ----------------------------------------------------------------------------


def test_the_apis_running_limit_answer_shuts_the_share_until_one_of_our_recordings_ends() -> None:
    budget = owning(Budget(limits(10), partitions=1), 0)
    start(budget, 0, "short", seconds=300)
    start(budget, 0, "long", seconds=900)
    budget.refused_by_api(RUNNING_LIMIT, NOW)
    assert budget.room(100, NOW) == RUNNING_LIMIT
    assert budget.room(100, NOW + 299) == RUNNING_LIMIT
    assert budget.next_change(NOW) == NOW + 300
    assert budget.room(50, NOW + 300) is None


def test_the_apis_running_limit_answer_with_none_of_ours_running_lapses_after_a_while() -> None:
    budget = owning(Budget(limits(10), partitions=1), 0)
    budget.refused_by_api(RUNNING_LIMIT, NOW)
    assert budget.room(50, NOW + DEFAULT_FULL_SECONDS - 1) == RUNNING_LIMIT
    assert budget.room(50, NOW + DEFAULT_FULL_SECONDS) is None


def test_the_apis_daily_limit_answer_shuts_the_share_until_midnight_in_china() -> None:
    budget = owning(Budget(limits(10, 0), partitions=1), 0, now=BEFORE_MIDNIGHT - 3600)
    budget.refused_by_api(DAILY_LIMIT, BEFORE_MIDNIGHT - 3600)
    assert budget.room(100, BEFORE_MIDNIGHT) == DAILY_LIMIT
    assert budget.room(100, BEFORE_MIDNIGHT + 1) is None


# --- the ledger against a brute-force model ---------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["record", "clear", "hold", "release", "tick"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(-3600, 3600),  # start, relative to the clock
        st.integers(1, 1800),  # length
    ),
    max_size=60,
)


@given(operations)
def test_the_ledgers_counts_always_equal_a_recount_of_its_charges(ops: list[tuple[str, str, int, int]]) -> None:
    ledger = Ledger()
    durable: dict[str, Charge] = {}
    held: dict[str, Charge] = {}
    now = BEFORE_MIDNIGHT - 1800
    for op, key, offset, length in ops:
        charge = Charge(now + offset, now + offset + length)
        if op == "record":
            durable[key] = charge
            ledger.record(key, charge, now)
        elif op == "clear":
            durable.pop(key, None)
            ledger.record(key, None, now)
        elif op == "hold":
            held[key] = charge
            ledger.hold(key, charge, now)
        elif op == "release":
            held.pop(key, None)
            ledger.release(key, now)
        else:
            now += length
        charged = {k: durable.get(k) or held[k] for k in durable.keys() | held.keys()}
        assert len(ledger) == len(charged)
        assert ledger.running(now) == sum(1 for c in charged.values() if c.end > now)
        assert ledger.next_end(now) == min((c.end for c in charged.values() if c.end > now), default=None)
        for day in {cst_day_number(c.start) for c in charged.values()}:
            assert ledger.started_on(day) == sum(1 for c in charged.values() if cst_day_number(c.start) == day)


def test_with_both_limits_off_the_apis_limit_answer_skips_only_its_own_moment() -> None:
    budget = owning(Budget(limits(0, 0), partitions=1), 0)
    budget.refused_by_api(RUNNING_LIMIT, NOW)
    budget.refused_by_api(DAILY_LIMIT, NOW)
    assert budget.room(50, NOW) is None
    assert not budget.tracking


def test_room_may_have_appeared_is_told_when_a_charge_or_a_partition_goes() -> None:
    told: list[str] = []
    budget = Budget(limits(10), partitions=2, on_change=lambda: told.append("changed"))
    budget.restore(0, [], NOW)
    budget.hold(0, "k", Charge(NOW, NOW + 300), NOW)
    start(budget, 0, "k")
    assert len(told) == 1, "taking room tells no one"
    budget.record(0, "k", None, NOW)
    budget.unhold(0, "k", NOW)
    budget.release(0)
    assert len(told) == 4
