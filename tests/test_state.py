"""The state store: raw restored entries, intents spotted without decoding, positions that never skip another
member's record, and release records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlight.dedup import DedupKey, Entry, Phase, encode_entry, encode_key
from highlight.kafka import Partition
from highlight.lease import OWNER_HEADER, Claim, Membership, Release, encode_claim
from highlight.moment import Moment
from highlight.recording import format_cst
from highlight.state import INTENT_MARK, StateStore, _is_intent
from tests.harness import Names, create_topics, held_lease, state_store

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


# --- claims: which owner's writes count -----------------------------------------------------------------------

A = Membership(4, "member-a")
B = Membership(5, "member-b")
LEASE = held_lease()


async def test_after_a_claim_an_earlier_owners_late_writes_count_for_nothing(bootstrap: str, names: Names) -> None:
    # The earlier owner put these while its lease held and stalled before they left; they land after the next
    # owner's claim and its own intent. Read by whoever comes next, they must change nothing: the withdrawal
    # would let the key be called again, and the stale intent would name the wrong window.
    await create_topics(bootstrap, {names.state: 1})
    withdrawn, stale, older = live_key("withdrawn"), live_key("stale"), live_key("older-version")
    theirs = Entry(Phase.INTENT, "e-b", "2026-12-02 13:47:40", "2026-12-02 13:52:40")
    async with state_store(bootstrap, names) as (earlier, producer):
        await earlier.restore({0})
        await earlier.claim({0}, A, LEASE, wait=True)
        await earlier.put(0, withdrawn, Entry(Phase.INTENT, "e-a", "2026-12-02 13:47:29", "2026-12-02 13:52:29"))
        async with state_store(bootstrap, names) as (later, _):
            await later.restore({0})
            await later.claim({0}, B, LEASE, wait=True)
            for key in (withdrawn, stale):
                await later.put(0, key, theirs)
            # Late: the earlier owner's writes, sent only now.
            await earlier.put(0, withdrawn, None)
            await earlier.put(0, stale, Entry(Phase.INTENT, "e-a", "2026-12-02 13:47:29", "2026-12-02 13:52:29"))
            # A member of a version before claims writes without a token: it counts, as it always did.
            await producer.send(names.state, encode_entry(theirs), key=encode_key(older), partition=0)
        async with state_store(bootstrap, names) as (next_owner, _):
            await next_owner.restore({0})
            assert next_owner.get(0, withdrawn) == theirs, "a late withdrawal undoes nothing"
            assert next_owner.get(0, stale) == theirs, "a late intent overwrites nothing"
            assert next_owner.get(0, older) == theirs
            assert await next_owner.resolve_intents({0}) == 3


async def test_a_late_claim_naming_an_older_claim_counts_for_nothing(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    key = live_key("claimed")
    entry = Entry(Phase.FAILED, "e-b")
    async with state_store(bootstrap, names) as (first, producer):
        await first.restore({0})
        await first.claim({0}, A, LEASE, wait=True)
        first_token = first._tokens[0].decode()
        async with state_store(bootstrap, names) as (owner, _):
            await owner.restore({0})
            await owner.claim({0}, B, LEASE, wait=True)
            # A member that read the first claim and stalled as its own claim left: it lands now, naming the first.
            late = Claim("zombie", first_token, A.generation, "member-zombie")
            await producer.send(names.state, encode_claim(late), key=late.key, partition=0)
            await producer.send(
                names.state, None, key=encode_key(key), partition=0, headers=[(OWNER_HEADER, b"zombie")]
            )
            await owner.put(0, key, entry)
    async with state_store(bootstrap, names) as (reader, _):
        await reader.restore({0})
        assert reader.get(0, key) == entry, "the owner's write still counts after the late claim"
        assert reader._claims[0] == owner._tokens[0]


async def test_a_claim_overtaken_by_a_late_claim_is_made_again_after_it(bootstrap: str, names: Names) -> None:
    await create_topics(bootstrap, {names.state: 1})
    key = live_key("overtaken")
    entry = Entry(Phase.FAILED, "e")
    async with state_store(bootstrap, names) as (owner, _), state_store(bootstrap, names) as (zombie, _):
        await owner.restore({0})
        await zombie.restore({0})
        # The zombie's claim lands between the owner's read and the owner's claim, naming the same predecessor.
        await zombie.claim({0}, A, LEASE, wait=True)
        await owner.claim({0}, B, LEASE, wait=True)
        await owner.put(0, key, entry)
        await zombie.put(0, key, None)
    async with state_store(bootstrap, names) as (reader, _):
        await reader.restore({0})
        assert reader.get(0, key) == entry


# --- the candidates of a moment -------------------------------------------------------------------------------

CANDIDATE_BUCKET = 300
CANDIDATE_MAX_AGE = 120
CANDIDATE_NOW = 1_714_536_000.0  # 2024-05-01 04:00:00 UTC, a bucket's start


class _Acknowledging:
    """A producer that acknowledges every write at once, at the next offset."""

    def __init__(self, first: int) -> None:
        self._next = first

    async def send(self, *_args: object, **_kwargs: object) -> int:
        self._next += 1
        return self._next - 1


class _Log:
    """A changelog of raw records, read as `ChangelogReader.read` reads one."""

    def __init__(self, records: list[tuple[bytes, bytes | None]]) -> None:
        self._records = records

    async def read(
        self, partitions: list[Partition], apply: Callable[..., None], starts: dict[Partition, int]
    ) -> tuple[int, dict[Partition, int]]:
        for key, value in self._records:
            apply(partitions[0], key, value)
        return len(self._records), {partitions[0]: len(self._records)}


def _candidate_entry(event: str, phase: Phase, start_offset: int) -> Entry:
    start = CANDIDATE_NOW + start_offset
    return Entry(phase, event, format_cst(_utc(start)), format_cst(_utc(start + 300)), task_id="1", attempts=1)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_candidate_keys = st.tuples(
    st.sampled_from(["ch", "other"]),
    st.sampled_from([0, 0, -1, 1, -9, -10, 2]) | st.integers(-12, 3),
    st.sampled_from([None, "new", "a"]),
)
_candidate_values = (
    st.builds(_candidate_entry, st.sampled_from(["new", "a", "b"]), st.sampled_from(list(Phase)), st.integers(-900, 60))
    | st.just(b"not an entry")
    | st.none()
)


@settings(max_examples=500)
@given(
    restored=st.lists(st.tuples(_candidate_keys, _candidate_values), max_size=10),
    written=st.lists(st.tuples(_candidate_keys, _candidate_values.filter(lambda v: not isinstance(v, bytes)))),
    window_mode=st.booleans(),
    occurred=st.integers(-600, 300),
)
def test_the_candidates_are_the_moments_own_keys_and_its_channels_indexed_keys_in_reach(
    restored: list[tuple[tuple[str, int, str | None], Entry | bytes | None]],
    written: list[tuple[tuple[str, int, str | None], Entry | None]],
    window_mode: bool,
    occurred: int,
) -> None:
    instant = _utc(CANDIDATE_NOW + occurred)
    m = Moment("new", "ch", instant, instant.isoformat())
    bucket = m.bucket(CANDIDATE_BUCKET)

    def key_of(spec: tuple[str, int, str | None]) -> DedupKey:
        channel, offset, event = spec
        return (channel, bucket + offset) if event is None else (channel, bucket + offset, event)

    def raw(value: Entry | bytes | None) -> bytes | None:
        return encode_entry(value) if isinstance(value, Entry) else value

    log = _Log([(encode_key(key_of(spec)), raw(value)) for spec, value in restored])
    store = StateStore(
        "state",
        _Acknowledging(len(restored)),  # type: ignore[arg-type]  # only `send` is used
        log,  # type: ignore[arg-type]  # only `read` is used
        bucket_seconds=CANDIDATE_BUCKET,
        max_event_age_seconds=CANDIDATE_MAX_AGE,
        clock=lambda: CANDIDATE_NOW,
        window_mode=window_mode,
    )

    async def fill() -> None:
        await store.restore({0})
        for spec, value in written:
            await store.put(0, key_of(spec), value)

    asyncio.run(fill())
    found = store.candidates(0, m)
    # By the letter of `candidates`: its own two keys, and its channel's keys that window coverage may consult
    # (every key in window mode, window keys in bucket mode) from about half an hour before to a little after.
    earliest = bucket - (1800 + CANDIDATE_MAX_AGE + 600) // CANDIDATE_BUCKET - 1
    latest = bucket + CANDIDATE_MAX_AGE // CANDIDATE_BUCKET + 1
    own = {("ch", bucket), ("ch", bucket, "new")}
    universe = {key_of(spec) for spec, _ in [*restored, *written]} | own
    expected = {}
    for key in universe:
        reachable = key[0] == "ch" and (window_mode or len(key) == 3) and earliest <= key[1] <= latest
        entry = store.get(0, key) if key in own or reachable else None
        if entry is not None:
            expected[key] = entry
    assert found == expected
