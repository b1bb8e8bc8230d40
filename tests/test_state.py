"""The state store: raw restored entries, intents spotted without decoding, positions that never skip another
member's record, and release records."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.dedup import DedupKey, Entry, Phase, encode_entry, encode_key
from highlight.lease import Release
from highlight.state import INTENT_MARK, _is_intent
from tests.harness import Names, create_topics, state_store

texts = st.text(max_size=40)


@given(phase=st.sampled_from(list(Phase)), event_id=texts, start=st.none() | texts, message=st.none() | texts)
def test_raw_bytes_are_recognised_as_an_intent_exactly_when_the_entry_is_one(
    phase: Phase, event_id: str, start: str | None, message: str | None
) -> None:
    entry = Entry(phase, event_id, start_time=start, end_time=start, error_message=message)
    assert _is_intent(encode_entry(entry)) == (phase is Phase.INTENT)
    assert _is_intent(entry) == (phase is Phase.INTENT)


def test_an_event_id_quoting_the_mark_is_not_mistaken_for_an_intent() -> None:
    tricky = Entry(Phase.STARTED, INTENT_MARK.decode(), task_id="1")
    assert not _is_intent(encode_entry(tricky))


# --- against the broker: positions, kept tables, release records ---------------------------------------


def live_key(channel: str) -> DedupKey:
    return channel, int(time.time()) // 300


async def test_a_kept_table_reads_another_members_intent_written_between_its_own_writes(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 1})
    ours_before, theirs, ours_after = live_key("ours-1"), live_key("theirs"), live_key("ours-2")
    started = Entry(Phase.STARTED, "e-ours", task_id="1")
    async with state_store(bootstrap, names) as (state, producer):
        await state.restore({0})
        await state.put(0, ours_before, started)
        # A stalled previous owner's intent lands between two writes of ours, as it may before it self-fences.
        await producer.send(
            names.state, encode_entry(Entry(Phase.INTENT, "e-theirs")), key=encode_key(theirs), partition=0
        )
        await state.put(0, ours_after, started)
        await state.write_release(0, Release(3, "us"))
        state.release({0}, keep=True)

        report = await state.restore({0})  # the same index assigned to us again: the kept table is reused
        assert report.records == 3, "read from the first record it had not applied, ours after it included"
        assert report.tails[0] == Release(3, "us")
        assert await state.resolve_intents({0}) == 1
    entry = state.get(0, theirs)
    assert entry is not None
    assert entry.phase is Phase.IN_DOUBT, "their call may have been made: never call again"
    assert state.get(0, ours_before) == state.get(0, ours_after) == started


async def test_a_kept_table_after_a_clean_handover_reads_nothing_and_sees_its_own_release_last(
    bootstrap: str, names: Names
) -> None:
    await create_topics(bootstrap, {names.state: 1})
    async with state_store(bootstrap, names) as (state, _producer):
        await state.restore({0})
        await asyncio.gather(*(state.put(0, live_key(f"c-{n}"), Entry(Phase.FAILED, f"e-{n}")) for n in range(20)))
        await state.write_release(0, Release(5, "us", 1.5))
        state.release({0}, keep=True)
        report = await state.restore({0})
    assert report.records == 0, "every write of ours was contiguous: nothing to read back"
    assert report.tails[0] == Release(5, "us", 1.5)


async def test_the_handover_is_the_partitions_last_record_or_none(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 2})
    async with state_store(bootstrap, names) as (first, _producer):
        await first.restore({0, 1})
        await first.write_release(0, Release(2, "a"))
        await first.write_release(1, Release(2, "a"))
        await first.put(1, live_key("after"), Entry(Phase.INTENT, "e-after"))
    async with state_store(bootstrap, names) as (second, _producer):
        report = await second.restore({0, 1})
        assert report.tails == {0: Release(2, "a"), 1: None}
        assert second.entries() == 1, "a release record is not a dedup entry"


@pytest.mark.parametrize(
    ("final", "late"),
    [
        (Entry(Phase.STARTED, "e-1", task_id="7"), Entry(Phase.INTENT, "e-zombie")),
        (Entry(Phase.STARTED, "e-1", task_id="7"), None),
        (Entry(Phase.IN_DOUBT, "e-1"), Entry(Phase.STARTED, "e-zombie", task_id="8")),
        (Entry(Phase.IN_DOUBT, "e-1"), Entry(Phase.FAILED, "e-zombie")),
        (Entry(Phase.IN_DOUBT, "e-1"), None),
    ],
    ids=[
        "started-then-intent",
        "started-then-withdrawn",
        "in-doubt-then-started",
        "in-doubt-then-failed",
        "in-doubt-then-withdrawn",
    ],
)
async def test_a_final_entry_outlives_a_stalled_members_late_write(
    bootstrap: str, names: Names, final: Entry, late: Entry | None
) -> None:
    # No owner writes to a key after its recording or its in_doubt: a later record is a stalled member's write
    # that was on its way when it stalled, landing after its successor's. Read, it must change nothing.
    await create_topics(bootstrap, {names.state: 1})
    key = live_key("final")
    async with state_store(bootstrap, names) as (state, producer):
        await producer.send(names.state, encode_entry(final), key=encode_key(key), partition=0)
        late_value = None if late is None else encode_entry(late)
        await producer.send(names.state, late_value, key=encode_key(key), partition=0)
        await state.restore({0})
        assert state.get(0, key) == final


async def test_an_intent_may_still_be_withdrawn_or_resolved(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    withdrawn, resolved = live_key("withdrawn"), live_key("resolved")
    async with state_store(bootstrap, names) as (state, producer):
        for key in (withdrawn, resolved):
            await producer.send(names.state, encode_entry(Entry(Phase.INTENT, "e")), key=encode_key(key), partition=0)
        await producer.send(names.state, None, key=encode_key(withdrawn), partition=0)
        await state.restore({0})
        assert state.get(0, withdrawn) is None
        assert await state.resolve_intents({0}) == 1
    entry = state.get(0, resolved)
    assert entry is not None
    assert entry.phase is Phase.IN_DOUBT


async def test_a_recordings_entry_still_takes_its_clips_after_it_is_final(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    key = live_key("clipped")
    started = Entry(Phase.STARTED, "e-1", task_id="7")
    clipped = Entry(Phase.STARTED, "e-1", task_id="7", clipped_files=("file-1",))
    async with state_store(bootstrap, names) as (state, producer):
        for entry in (started, clipped):
            await producer.send(names.state, encode_entry(entry), key=encode_key(key), partition=0)
        await state.restore({0})
        assert state.get(0, key) == clipped, "the same phase again (a clip added) is the owner's own write"
