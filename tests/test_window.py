"""Sharing the in-flight bound among partitions (highlight.window): pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.kafka import Partition
from highlight.window import Window

P = [Partition("highlight.moments", i) for i in range(6)]


def test_an_idle_instance_lets_a_partition_take_everything_but_the_spare() -> None:
    window = Window(256)
    assert window.spare == 8
    assert window.allowance(held=0, total=0, busy=0) == 248


def test_a_hot_partition_never_takes_the_spare_so_an_idle_partition_gets_a_slot_at_once() -> None:
    window = Window(256)
    hot = window.allowance(held=0, total=0, busy=0)
    assert window.allowance(held=hot, total=hot, busy=1) == 0, "the hot partition stops at its share"
    assert window.allowance(held=0, total=hot, busy=1) == 8, "a newcomer may use the spare"


def test_a_partition_below_its_fair_share_takes_up_to_it_from_any_free_slot() -> None:
    window = Window(256)
    # Two busy partitions share 128 each; one holds 10 while the other holds 240.
    assert window.allowance(held=10, total=250, busy=2) == 6
    assert window.allowance(held=240, total=250, busy=2) == 0


def test_nothing_is_allowed_at_the_bound() -> None:
    window = Window(16)
    assert window.allowance(held=0, total=16, busy=3) == 0
    assert window.allowance(held=16, total=16, busy=1) == 0


def test_a_small_bound_keeps_no_spare_and_a_single_partition_may_fill_it() -> None:
    window = Window(5)
    assert window.spare == 0
    assert window.allowance(held=0, total=0, busy=0) == 5


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Window(0)


def test_the_partition_holding_least_draws_first() -> None:
    held = {P[0]: 7, P[1]: 0, P[2]: 3}
    assert Window.order(held, held.__getitem__) == [P[1], P[2], P[0]]


def _draw(window: Window, held: dict[Partition, int], demand: dict[Partition, int]) -> dict[Partition, int]:
    """One pass as the service makes it: least loaded first, each taking what it may and has waiting."""
    taken = {}
    for partition in window.order(held, held.__getitem__):
        total, busy = sum(held.values()), sum(1 for n in held.values() if n)
        take = min(demand[partition], window.allowance(held[partition], total, busy))
        held[partition] += take
        demand[partition] -= take
        taken[partition] = take
    return taken


@given(
    st.integers(1, 512),
    st.lists(st.integers(0, 600), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=30),
)
def test_in_flight_never_exceeds_the_bound_whatever_the_demand_and_completions(
    limit: int, demands: list[int], completions: list[tuple[int, int]]
) -> None:
    window = Window(limit)
    held = {P[i]: 0 for i in range(len(demands))}
    demand = {P[i]: n for i, n in enumerate(demands)}
    for which, finished in completions:
        _draw(window, held, demand)
        assert sum(held.values()) <= limit
        partition = P[which % len(demands)]
        held[partition] -= min(held[partition], finished)
    _draw(window, held, demand)
    assert sum(held.values()) <= limit


@given(st.integers(32, 1024), st.integers(1, 5))
def test_one_hot_partition_leaves_the_spare_to_the_others(limit: int, others: int) -> None:
    window = Window(limit)
    held = {P[i]: 0 for i in range(others + 1)}
    demand = {P[0]: 10**6, **{P[i]: 0 for i in range(1, others + 1)}}
    _draw(window, held, demand)
    assert held[P[0]] == limit - window.spare
    # Now each of the others has one moment: every one of them gets a slot in the very next pass.
    demand.update({P[i]: 1 for i in range(1, others + 1)})
    _draw(window, held, demand)
    if others <= window.spare:
        assert all(held[P[i]] == 1 for i in range(1, others + 1))
    assert sum(held.values()) <= limit


@given(st.integers(1, 1024), st.lists(st.integers(0, 300), min_size=2, max_size=6))
def test_a_partition_below_its_fair_share_gets_up_to_it_from_the_free_slots(limit: int, holding: list[int]) -> None:
    window = Window(limit)
    total, busy = sum(holding), sum(1 for n in holding if n)
    for held in holding:
        if total > limit:
            return
        fair = window.fair_share(busy if held else busy + 1)
        allowance = window.allowance(held, total, busy)
        assert allowance <= limit - total
        if held < fair:
            assert allowance >= min(limit - total, fair - held)
        else:
            assert allowance <= max(0, limit - total - window.spare)
