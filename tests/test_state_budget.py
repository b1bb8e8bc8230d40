"""The state store and the budget together, on a real broker: entries kept for the counts, counts restored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from highlight.budget import DAILY_LIMIT, RUNNING_LIMIT, Budget, Limits
from highlight.dedup import Entry, Phase
from highlight.kafka import ChangelogReader, Producer
from highlight.moment import Moment
from highlight.recording import CST, format_cst
from highlight.state import StateStore
from tests.harness import Names, create_topics, settings_for

BUCKET = 300
MAX_AGE = 120
# 20:00:00 in China: a bucket starts here, and the CST day ends four hours later.
T0 = datetime(2026, 11, 22, 20, 0, 0, tzinfo=CST)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def recording(event: str, seconds: int, phase: Phase = Phase.STARTED) -> Entry:
    start = T0 + timedelta(seconds=5)
    return Entry(phase, event, format_cst(start), format_cst(start + timedelta(seconds=seconds)), task_id="1")


@asynccontextmanager
async def store(
    bootstrap: str, names: Names, clock: Clock, budget: Budget, *, window_mode: bool = False
) -> AsyncIterator[StateStore]:
    kafka = settings_for(bootstrap, names, "http://127.0.0.1:1/").kafka
    async with Producer(kafka) as producer:
        reader = ChangelogReader(kafka)
        await reader.start()
        try:
            yield StateStore(
                names.state,
                producer,
                reader,
                bucket_seconds=BUCKET,
                max_event_age_seconds=MAX_AGE,
                clock=clock,
                budget=budget,
                window_mode=window_mode,
            )
        finally:
            await reader.stop()


def budget(daily: int = 10) -> Budget:
    return Budget(Limits(running=10, daily=daily, reserved_share=0, reserved_priority=80), partitions=1)


async def test_a_recordings_entry_outlives_its_bucket_until_its_window_and_its_cst_day_are_over(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 1})
    clock = Clock()
    bucket = int(T0.timestamp()) // BUCKET
    keys = {"long": ("a", bucket), "short": ("b", bucket), "failed": ("c", bucket)}
    async with store(bootstrap, names, clock, budget()) as state:
        await state.restore({0})
        await state.put(0, keys["long"], recording("long", 1800))
        await state.put(0, keys["short"], recording("short", 300))
        await state.put(0, keys["failed"], recording("failed", 300, Phase.FAILED))

        clock.now += BUCKET + MAX_AGE + 61  # every key's bucket is over
        assert await state.expire() == 1, "only the entry that records nothing goes with its bucket"
        assert state.get(0, keys["failed"]) is None

        clock.now = (T0 + timedelta(hours=3, minutes=59)).timestamp()  # windows over, the CST day not
        assert await state.expire() == 0, "a daily limit keeps today's recordings for their count"

    # A restart: what the state topic holds, read by a new store, before the day is over.
    fresh = budget()
    async with store(bootstrap, names, clock, fresh) as restarted:
        await restarted.restore({0})
        assert restarted.get(0, keys["long"]) is not None
        assert fresh.usage(DAILY_LIMIT, clock.now).in_use == 2, "today's count survives the restart"
        assert fresh.usage(RUNNING_LIMIT, clock.now).in_use == 0
        clock.now = (T0 + timedelta(hours=4, minutes=2)).timestamp()  # 00:02 the next day
        assert await restarted.expire() == 2
        assert fresh.usage(DAILY_LIMIT, clock.now).in_use == 0


async def test_without_a_daily_limit_a_recording_is_kept_only_until_its_window_is_over(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 1})
    clock = Clock()
    key = ("a", int(T0.timestamp()) // BUCKET)
    running_only = budget(daily=0)
    async with store(bootstrap, names, clock, running_only) as state:
        await state.restore({0})
        await state.put(0, key, recording("long", 1800))
        assert running_only.usage(RUNNING_LIMIT, clock.now).in_use == 1
        clock.now += 1800 + 5 + MAX_AGE  # the window and the age of its last live moment
        assert await state.expire() == 0
        clock.now += 61
        assert await state.expire() == 1
        assert running_only.usage(RUNNING_LIMIT, clock.now).in_use == 0


async def test_window_mode_finds_a_channels_recordings_in_other_buckets(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    clock = Clock()
    bucket = int(T0.timestamp()) // BUCKET
    async with store(bootstrap, names, clock, budget(), window_mode=True) as state:
        await state.restore({0})
        earlier = ("ch", bucket - 1, "e-1")
        await state.put(0, earlier, recording("e-1", 600))
        await state.put(0, ("other", bucket - 1, "e-2"), recording("e-2", 600))
        moment = Moment("e-3", "ch", T0 + timedelta(seconds=10), "")
        assert set(state.candidates(0, moment)) == {earlier}
