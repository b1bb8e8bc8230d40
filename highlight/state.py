"""Dedup state: an in-memory table per partition index, kept durable in the compacted state topic.

A record for a key of channel c goes to the state partition with c's home index, so the member that owns
moments partition i restores exactly state partition i. The budget's counts (`highlight.budget`) are derived
from the same entries: every write and every restore tells it what each entry charges.
The partition also carries release and claim records (`highlight.lease`): what an owner writes when it hands the
index over, and when it takes it over; they are not dedup entries. Every record we write carries our claim's
token, so a stalled earlier owner's write that lands after a newer claim counts for nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from highlight.budget import Budget, Charge
from highlight.dedup import (
    DedupKey,
    Entry,
    Phase,
    decode_entry,
    encode_entry,
    encode_key,
    expires_at,
    is_window_key,
    keep_until,
    recording_span,
)
from highlight.errors import Fenced, HighlightError
from highlight.kafka import ChangelogReader, Partition, Producer
from highlight.lease import (
    OWNER_HEADER,
    RELEASE_KEY,
    Claim,
    Lease,
    Membership,
    Release,
    encode_claim,
    encode_release,
)
from highlight.moment import Moment
from highlight.recording import MAX_RECORD_SECONDS
from highlight.restore import replayer

log = structlog.get_logger("highlight.state")

# Tombstones sent together; the producer batches them into few requests.
EXPIRY_BATCH = 1000
# Generous room for retries (attempts spaced by seconds, each up to its timeout) between a moment and its call.
CALL_SLACK_SECONDS = 600
# Offsets of our own writes held while a record we did not write lies before them (see `_wrote`).
MAX_AHEAD = 100_000
# Claims in a row another claim may overtake before taking an index over fails (each stalled member has at most
# one claim in flight).
CLAIM_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RestoreReport:
    partitions: int
    records: int
    entries: int
    seconds: float
    # Per index, the partition's last record if it is a release (the handover), else None.
    tails: dict[int, Release | None]


class StateStore:
    def __init__(
        self,
        topic: str,
        producer: Producer,
        reader: ChangelogReader,
        *,
        bucket_seconds: int,
        max_event_age_seconds: int,
        clock: Callable[[], float] = time.time,
        budget: Budget | None = None,
        window_mode: bool = False,
        clip_wait_seconds: int = 0,
    ) -> None:
        self._topic = topic
        self._producer = producer
        self._reader = reader
        self._bucket_seconds = bucket_seconds
        self._max_age = max_event_age_seconds
        self._clock = clock
        self._clip_wait = clip_wait_seconds
        self._budget = budget
        # With a daily limit, a recording's entry is kept until its CST day is over (`keep_until`).
        self._keep_days = budget is not None and budget.tracking and budget.limits.daily > 0
        # Per index, the keys of each channel that window coverage may consult beyond a moment's own two: every
        # key in window mode, window keys only (from before a switch, usually none) in bucket mode.
        self._index_all = window_mode
        self._channels: dict[int, dict[str, set[DedupKey]]] = {}
        # Restored entries stay as their raw bytes until first read: decoding a million entries (and keeping a
        # million objects for the garbage collector to scan) would dominate a restore that few keys outlive.
        self._tables: dict[int, dict[DedupKey, Entry | bytes]] = {}
        # Up to where each table reflects the log with nothing skipped; a re-assigned index reads from there.
        # Our own writes move it only when they land right at it: another member's record in between (a
        # stalled previous owner's late write) must be read, not jumped over.
        self._positions: dict[int, int] = {}
        self._ahead: dict[int, dict[int, Release | None]] = {}
        # The record just before each position, if it is a release: how the index was last handed over.
        self._tails: dict[int, Release | None] = {}
        self._kept: set[int] = set()
        # Per index, the token of the claim that counts, as read in the log (`highlight.lease.Claim`): a record
        # carrying another token after it is a stalled earlier owner's late write, and is ignored.
        self._claims: dict[int, bytes] = {}
        # Per index, the token of our own latest claim: what our writes carry, even after the index is gone (a
        # write of ours that lands late then carries a token the claim after ours outranks).
        self._tokens: dict[int, bytes] = {}

    def entries(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def get(self, index: int, key: DedupKey) -> Entry | None:
        table = self._tables[index]
        value = table.get(key)
        if not isinstance(value, bytes):
            return value
        try:
            entry = decode_entry(value)
        except (ValueError, KeyError, TypeError):
            log.warning("state_record_unreadable", partition=index, channel=key[0], bucket=key[1])
            del table[key]
            return None
        table[key] = entry
        return entry

    def candidates(self, index: int, moment: Moment) -> dict[DedupKey, Entry]:
        """The entries that may answer `moment` (`highlight.dedup.decide_among`): its bucket key's, its window
        key's, and the indexed keys of its channel."""
        table = self._tables[index]
        channel, bucket = moment.channel_id, moment.bucket(self._bucket_seconds)
        found: dict[DedupKey, Entry] = {}
        # Read in place: most moments find their entry already decoded, or nothing (one lookup each).
        for key in ((channel, bucket), (channel, bucket, moment.event_id)):
            value = table.get(key)
            if value is not None:
                entry = self.get(index, key) if isinstance(value, bytes) else value
                if entry is not None:
                    found[key] = entry
        channels = self._channels.get(index)
        indexed = None if channels is None else channels.get(channel)
        if not indexed:
            return found
        # Only recordings of moments from about half an hour before it to a little after can cover it: a key's
        # bucket is its moment's, a call follows its moment within the age limit (and retries), and a recording
        # lasts at most 30 minutes. Older entries (a daily limit keeps a day of them) are not even decoded.
        earliest = bucket - (MAX_RECORD_SECONDS + self._max_age + CALL_SLACK_SECONDS) // self._bucket_seconds - 1
        latest = bucket + self._max_age // self._bucket_seconds + 1
        for key in indexed:
            if earliest <= key[1] <= latest and key not in found:
                entry = self.get(index, key)
                if entry is not None:
                    found[key] = entry
        return found

    def recordings(self, index: int, channel_id: str, buckets: range) -> list[tuple[DedupKey, Entry]]:
        """The entries of `channel_id` whose bucket is in `buckets`: its bucket keys', and its indexed window keys'
        (`highlight.clips` narrows the buckets a recording file can belong to)."""
        keys: set[DedupKey] = {(channel_id, bucket) for bucket in buckets}
        indexed = self._channels.get(index, {}).get(channel_id, ())
        keys.update(key for key in indexed if key[1] in buckets)
        found = []
        for key in sorted(keys):
            entry = self.get(index, key)
            if entry is not None:
                found.append((key, entry))
        return found

    async def put(self, index: int, key: DedupKey, entry: Entry | None) -> None:
        """Durable first (acknowledged by the brokers), then visible; `None` deletes."""
        offset = await self._producer.send(
            self._topic,
            None if entry is None else encode_entry(entry),
            key=encode_key(key),
            partition=index,
            headers=self._owner(index),
        )
        table = self._tables.get(index)
        if table is None:
            # Released meanwhile (an expiry racing a revoke): the log holds the write, and the next restore of
            # this index reads it from the log.
            return
        self._wrote(index, offset, None)
        if entry is None:
            table.pop(key, None)
        else:
            table[key] = entry
        self._index(index, key, entry is not None)
        if self._budget is not None:
            span = None if entry is None else recording_span(entry)
            self._budget.record(index, key, None if span is None else Charge(*span), self._clock())

    async def write_release(self, index: int, release: Release) -> None:
        """Hand `index` over: after this record, nothing of ours follows until the index is ours again."""
        offset = await self._producer.send(
            self._topic, encode_release(release), key=RELEASE_KEY, partition=index, headers=self._owner(index)
        )
        if index in self._tables:
            self._wrote(index, offset, release)

    async def claim(self, indexes: set[int], membership: Membership, lease: Lease, *, wait: bool) -> None:
        """Make restored `indexes` ours before deciding anything there: a claim naming the claim that counts now,
        then the log read to its end again, so what landed before the claim (late writes included) is in the
        tables, and what lands after it from anyone else never counts.

        A claim made again, because another overtook ours, is made only under the lease (`Fenced` otherwise): a
        member that stalled in here and wakes after its successor's claim must not claim again after it. `wait`:
        wait for the lease to cover every claim, where heartbeats can renew it; inside a rebalance they cannot,
        and the first claim goes at once there unless the coordinator has fenced us already (the assignment has
        just proved the membership, and a late first claim names a claim that no longer counts).
        """
        pending = set(indexes)
        for attempt in range(CLAIM_ATTEMPTS):
            if not pending:
                return
            if wait:
                await lease.writable()
            elif lease.fence is not None or (attempt and not lease.may_write()):
                raise Fenced(f"cannot claim state partitions {sorted(pending)}: the lease does not cover it")
            tokens: dict[int, bytes] = {}
            claims = []
            for index in sorted(pending):
                token = secrets.token_hex(8)
                counting = self._claims.get(index)
                claim = Claim(
                    token, None if counting is None else counting.decode(), membership.generation, membership.member_id
                )
                # Not passed to `_wrote`: the read below must apply it, so that it counts from here on.
                claims.append(self._producer.send(self._topic, encode_claim(claim), key=claim.key, partition=index))
                tokens[index] = token.encode()
            await asyncio.gather(*claims)
            await self.restore(pending, catch_up=True)
            for index, ours in tokens.items():
                if self._claims.get(index) == ours:
                    self._tokens[index] = ours
                    pending.discard(index)
            if pending:
                # A stalled owner's claim landed between our read and ours, naming what we named: ours counts for
                # nothing. Claim again after the one that counts (a stalled member has at most one claim in flight).
                log.warning("state_claim_overtaken", partitions=sorted(pending))
        if not pending:
            return
        raise HighlightError(f"could not claim state partitions {sorted(pending)}: other claims kept overtaking ours")

    def _owner(self, index: int) -> list[tuple[str, bytes | None]]:
        # An index never claimed (a release of one still waiting to be taken over) carries an empty token: after
        # anybody's claim it counts for nothing, rather than as the write of a version before claims.
        return [(OWNER_HEADER, self._tokens.get(index, b""))]

    def _wrote(self, index: int, offset: int, release: Release | None) -> None:
        """Move the index's position over our own write, if nothing lies between it and the position."""
        ahead = self._ahead.setdefault(index, {})
        ahead[offset] = release
        self._advance(index)
        if len(ahead) > MAX_AHEAD:
            ahead.clear()  # the next restore reads them back from the position anyway

    def _advance(self, index: int) -> None:
        ahead = self._ahead.get(index, {})
        position = self._positions.get(index, 0)
        for offset in [o for o in ahead if o < position]:
            del ahead[offset]  # read back by a restore already
        while position in ahead:
            self._tails[index] = ahead.pop(position)
            position += 1
        self._positions[index] = position

    async def restore(self, indexes: set[int], *, catch_up: bool = False) -> RestoreReport:
        """Bring the tables of `indexes` up to the end of the log, as read now (the fetch high-water mark).

        `catch_up`: a short read after one already made; indexes, and the budget, are rebuilt only where it
        changed an entry.
        """
        started = time.perf_counter()
        now = self._clock()
        fresh = indexes - self._tables.keys()
        for index in fresh:
            self._tables[index] = {}
            self._positions.pop(index, None)
            self._tails.pop(index, None)
            self._claims.pop(index, None)
        starts = {Partition(self._topic, i): self._positions.get(i, 0) for i in indexes}
        changed: set[int] | None = set() if catch_up else None
        apply = replayer(
            self._tables,
            self._tails,
            self._claims,
            changed,
            now=now,
            bucket_seconds=self._bucket_seconds,
            max_age=self._max_age,
            keep_until=self._keep_until,
        )
        records, ends = await self._reader.read(sorted(starts), apply, starts)
        for partition, end in ends.items():
            self._positions[partition.partition] = end
            self._advance(partition.partition)
        rebuilt = indexes if changed is None else indexes & changed
        for index in rebuilt:
            self._reindex(index)
        if self._budget is not None:
            # Intents count as recordings, as the in_doubt they may become does (`resolve_intents`).
            for index in rebuilt:
                charges = self._charges(index) if self._budget.tracking else []
                self._budget.restore(index, charges, self._clock())
        self._kept -= indexes
        return RestoreReport(
            partitions=len(indexes),
            records=records,
            entries=sum(len(self._tables[i]) for i in indexes),
            seconds=time.perf_counter() - started,
            tails={i: self._tails.get(i) for i in indexes},
        )

    async def resolve_intents(self, indexes: set[int]) -> int:
        """Intents without an outcome become in_doubt: their call may have been made. Returns how many."""
        in_doubt = 0
        for index in indexes:
            table = self._tables[index]
            for key in [k for k, v in table.items() if _is_intent(v)]:
                entry = self.get(index, key)
                if entry is not None and entry.phase is Phase.INTENT:
                    # A call was cut off (crash, kill, abandoned drain, a stalled owner): never call again.
                    await self.put(index, key, _in_doubt(entry))
                    in_doubt += 1
        return in_doubt

    def release(self, indexes: set[int], *, keep: bool) -> None:
        """Give up indexes after a revoke.

        A kept table is reused if an assignment brings its index back: it then reads the log from its position,
        which never skips a record it has not applied (another member's writes included). Keep only when every
        write of ours is known to be applied (no job abandoned).
        """
        for index in indexes:
            if self._budget is not None:
                self._budget.release(index)  # its share goes with it, kept table or not
            if keep:
                self._kept.add(index)
            else:
                self._drop(index)

    def drop_kept(self, except_indexes: set[int]) -> None:
        for index in list(self._kept - except_indexes):
            self._drop(index)
        self._kept &= except_indexes

    def _drop(self, index: int) -> None:
        self._tables.pop(index, None)
        self._positions.pop(index, None)
        self._claims.pop(index, None)
        self._channels.pop(index, None)
        self._ahead.pop(index, None)
        self._tails.pop(index, None)
        self._kept.discard(index)

    async def expire(self, writable: Callable[[], set[int]] | None = None) -> int:
        """Delete entries no live moment and no count needs any more (`keep_until`); returns how many.

        `writable()` names the indexes this member may write to now (owned, processing, and its lease holding;
        every index not kept if not given); asked again before every batch, since a rebalance or a lost lease
        may come while the batches go out.
        """
        now = self._clock()
        expired = [
            (index, key)
            for index, table in self._tables.items()
            if index not in self._kept
            for key, value in table.items()
            if expires_at(key[1], self._bucket_seconds, self._max_age) <= now and self._keep_until(key, value) <= now
        ]
        done = 0
        for chunk in range(0, len(expired), EXPIRY_BATCH):
            allowed = writable() if writable is not None else self._tables.keys() - self._kept
            batch = [(i, k) for i, k in expired[chunk : chunk + EXPIRY_BATCH] if i in allowed]
            await asyncio.gather(*(self.put(i, k, None) for i, k in batch))
            done += len(batch)
        return done

    def _keep_until(self, key: DedupKey, value: Entry | bytes) -> float:
        return keep_until(
            key,
            value,
            bucket_seconds=self._bucket_seconds,
            max_event_age_seconds=self._max_age,
            keep_days=self._keep_days,
            clip_wait_seconds=self._clip_wait,
        )

    def _index(self, index: int, key: DedupKey, present: bool) -> None:
        if not (self._index_all or is_window_key(key)):
            return
        channels = self._channels.setdefault(index, {})
        if present:
            channels.setdefault(key[0], set()).add(key)
        else:
            keys = channels.get(key[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del channels[key[0]]

    def _reindex(self, index: int) -> None:
        channels: dict[str, set[DedupKey]] = {}
        for key in self._tables[index]:
            if self._index_all or is_window_key(key):
                channels.setdefault(key[0], set()).add(key)
        self._channels[index] = channels

    def _charges(self, index: int) -> list[tuple[DedupKey, Charge]]:
        """What each entry of a partition charges the budget, read without decoding the entries."""
        charges = []
        for key, value in self._tables[index].items():
            span = recording_span(value)
            if span is not None:
                charges.append((key, Charge(*span)))
        return charges


def _is_intent(value: Entry | bytes) -> bool:
    if isinstance(value, bytes):
        # `encode_entry` writes exactly this for an intent, and string values escape their quotes, so the
        # bytes cannot contain it by accident; a false positive would only be decoded and checked anyway.
        return INTENT_MARK in value
    return value.phase is Phase.INTENT


INTENT_MARK = b'"phase":"intent"'


def _in_doubt(entry: Entry) -> Entry:
    return Entry(
        phase=Phase.IN_DOUBT,
        event_id=entry.event_id,
        start_time=entry.start_time,
        end_time=entry.end_time,
        error_code="in_doubt",
        error_message="the call was cut off before its outcome was recorded; it is never re-sent",
        attempts=entry.attempts,
        # The API that was called: an answer from this entry (and a clip of its recording) names it.
        api=entry.api,
        request_id=entry.request_id,
    )
