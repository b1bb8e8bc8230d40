"""The recording budget: the account's limits as something highlight spends deliberately. Pure.

A Live account may have so many recordings running (400) and create so many per China Standard Time day
(4,000). Past either, every call is refused; a budget keeps highlight from getting there in arrival order and
keeps the last part of each limit (the *reserve*) for moments whose priority is high enough.

**Shares.** Instances share the account. Each limit, and its reserve, is split over the moments partitions:
partition i gets floor(L/P), plus one for the first L mod P partitions, so the parts add up to exactly L. An
instance spends the parts of the partitions it owns, pooled: its share is proportional to its partitions and
moves with them on every rebalance.

**Counts come from durable state.** What a partition has spent is read off its dedup entries (`Ledger`): an
entry that is, or may be, a recording (`started`, `in_doubt`, or an `intent` whose outcome is not written yet)
is charged with its window. It is *running* until its window ends, and counts toward the CST day its window
started on. The entries are restored with their partition, so the counts survive restarts, kill -9 and
rebalances without anything of their own to keep; `highlight.dedup.keep_until` keeps a recording's entry until
its window has ended and its CST day is over, so nothing a count needs expires first. Each change of an entry
updates its partition's counts incrementally (a heap of window ends, a count per day), never a scan per moment.
A moment admitted by the budget also *holds* its slot from the decision until its call is over, so two moments
cannot both take the last slot, and a moment that waits out an API outage keeps the slot it was given.

**What it does not know, and why that is sound.** The budget only ever withholds calls, so it costs nothing to
the at-most-one-call guarantee; the API keeps the last word (its limit answer is `skipped`, and the instance then
treats its share as full). The approximations:
- *Skew.* A partition's part is fixed, and instances do not lend to each other: when the channels with moments
  hash unevenly, one instance can be short while another has room. Pooling within an instance evens out the
  partitions it owns; across instances, lending would need a round trip through Kafka before every call that
  borrows (latency, which costs footage) or a consensus on shares, to be safe.
- *Rebalances.* Pooling lets a busy partition run past its own part while its instance owns idle ones. When
  a rebalance then gives the idle partitions to another instance, that instance sees their parts unspent: the
  account can briefly hold more than the limit, by at most what was borrowed, until those recordings end (at
  most 30 minutes). Recording each loan in the lending partition's state would close the gap at the price of a
  second acknowledged write before such a call; the API's own limit answer bounds the harm instead.
- *Others.* Recordings made outside highlight, or by instances of another group on the same account, are
  invisible: set the limits to what highlight may use.
- *Unknown windows.* An entry with no window (written by versions before windows were recorded) is not
  counted.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from highlight.recording import cst_day_number, next_cst_midnight

RUNNING_LIMIT = "running_limit"
DAILY_LIMIT = "daily_limit"
# A limit of 0 means none.
NO_LIMIT = 0
# How long the API's running-limit answer shuts the share when none of our own recordings runs to end first:
# the shortest real-time recording, after which someone else's has likely ended.
DEFAULT_FULL_SECONDS = 300.0

Key = Hashable


@dataclass(frozen=True, slots=True)
class Limits:
    running: int  # recordings whose window has not ended; 0 = no limit
    daily: int  # recordings started per CST calendar day; 0 = no limit
    reserved_share: float  # the last part of each limit, for moments of reserved_priority or above
    reserved_priority: int

    @property
    def any(self) -> bool:
        return self.running > 0 or self.daily > 0


@dataclass(frozen=True, slots=True)
class Charge:
    """What one recording spends: running from `start` to `end`, counted on `start`'s CST day."""

    start: float  # UNIX seconds
    end: float


def part(total: int, index: int, partitions: int) -> int:
    """Partition `index`'s part of `total`: floor(total / partitions), plus one for the first remainder ones."""
    base, extra = divmod(total, partitions)
    return base + (1 if index < extra else 0)


def reserve(limit: int, share: float) -> int:
    """The reserved part of a limit: the last `share` of it, rounded up so any share keeps at least one."""
    return min(limit, math.ceil(round(limit * share, 9)))


class Ledger:
    """One partition's spending, derived from its dedup entries (durable) and the moments holding a slot."""

    def __init__(self) -> None:
        self._durable: dict[Key, Charge] = {}
        self._held: dict[Key, Charge] = {}
        self._charged: dict[Key, Charge] = {}  # the charge in force per key: durable, else held
        self._running: dict[Key, int] = {}  # key -> the sequence number of its live heap item
        self._ends: list[tuple[float, int, Key]] = []
        self._seq = 0
        self._days: Counter[int] = Counter()  # recordings per CST day (`cst_day_number`)
        self.ended = 0  # recordings whose window ended while counted here

    # --- what changes the counts --------------------------------------------------------------------

    def record(self, key: Key, charge: Charge | None, now: float) -> None:
        """The key's durable entry now charges `charge` (None: it is not, or no longer, a recording)."""
        if charge is None:
            self._durable.pop(key, None)
        else:
            self._durable[key] = charge
        self._settle(key, now)

    def hold(self, key: Key, charge: Charge, now: float) -> None:
        self._held[key] = charge
        self._settle(key, now)

    def release(self, key: Key, now: float) -> None:
        self._held.pop(key, None)
        self._settle(key, now)

    def _settle(self, key: Key, now: float) -> None:
        charge = self._durable.get(key) or self._held.get(key)
        old = self._charged.get(key)
        if charge == old:
            return
        if old is not None:
            del self._charged[key]
            # Its heap item, if any, goes stale and is skipped when it surfaces.
            self._running.pop(key, None)
            self._days[cst_day_number(old.start)] -= 1
        if charge is not None:
            self._charged[key] = charge
            self._days[cst_day_number(charge.start)] += 1
            if charge.end > now:
                self._seq += 1
                self._running[key] = self._seq
                heapq.heappush(self._ends, (charge.end, self._seq, key))

    def advance(self, now: float) -> None:
        """Retire the recordings whose window ended by `now`."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            _, seq, key = heapq.heappop(ends)
            if self._running.get(key) == seq:
                del self._running[key]
                self.ended += 1

    # --- what the budget reads ----------------------------------------------------------------------------

    def running(self, now: float) -> int:
        self.advance(now)
        return len(self._running)

    def started_on(self, day: int) -> int:
        """Recordings counted whose window started on CST day `day` (`cst_day_number`)."""
        return self._days[day]

    def next_end(self, now: float) -> float | None:
        """When the next counted recording ends (after `now`), if one is running."""
        self.advance(now)
        ends = self._ends
        while ends and self._running.get(ends[0][2]) != ends[0][1]:
            heapq.heappop(ends)  # stale: the key's charge changed since
        return ends[0][0] if ends else None

    def forget_days_before(self, day: int) -> None:
        for old in [d for d in self._days if d < day]:
            del self._days[old]

    def __len__(self) -> int:
        return len(self._charged)


@dataclass(frozen=True, slots=True)
class Usage:
    """One limit as an instance sees it: what its partitions spent, and what they may."""

    limit: str
    in_use: int
    share: int  # of the limit, for the partitions owned
    reserved: int  # of the share, for high-priority moments only
    limited: bool = True  # False: the limit is off (0)

    def has_room(self, high_priority: bool) -> bool:
        if not self.limited:
            return True
        cap = self.share if high_priority else self.share - self.reserved
        return self.in_use < cap


class Budget:
    """An instance's budget: the pooled parts of the partitions it owns, and their ledgers."""

    def __init__(self, limits: Limits, *, partitions: int, on_change: Callable[[], None] = lambda: None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.limits = limits
        self._partitions = partitions
        # Both limits off: nothing to count, nothing to keep (each API limit answer skips its own moment only).
        self.tracking = limits.any
        # Told whenever room may have appeared: a charge went, a partition came or went.
        self._on_change = on_change
        self._ledgers: dict[int, Ledger] = {}
        # After the API's own limit answer: no room for that limit until then (UNIX seconds), or until one of
        # our recordings ends (running; `_full_ended` is how many had ended when it answered).
        self._full_until: dict[str, float] = {}
        self._full_ended = 0
        self._ended_elsewhere = 0  # ended recordings of ledgers dropped since: `_ended` never goes back
        self._today: int | None = None

    # --- partitions ----------------------------------------------------------------------------------------

    def restore(self, index: int, charges: Iterable[tuple[Key, Charge]], now: float) -> None:
        """Own partition `index`, its ledger built from its restored entries' charges (replacing any)."""
        self._drop(index)
        ledger = self._ledgers[index] = Ledger()
        if self.tracking:
            for key, charge in charges:
                ledger.record(key, charge, now)
        self._on_change()

    def record(self, index: int, key: Key, charge: Charge | None, now: float) -> None:
        """An entry of an owned partition changed: it charges `charge`, or nothing (None)."""
        ledger = self._ledgers.get(index)
        if ledger is not None and self.tracking:
            ledger.record(key, charge, now)
            if charge is None:
                self._on_change()

    def hold(self, index: int, key: Key, charge: Charge, now: float) -> None:
        """A moment of `key` was given a slot: it counts from now until `unhold`, whatever its entry says."""
        ledger = self._ledgers.get(index)
        if ledger is not None and self.tracking:
            ledger.hold(key, charge, now)

    def unhold(self, index: int, key: Key, now: float) -> None:
        ledger = self._ledgers.get(index)
        if ledger is not None and self.tracking:
            ledger.release(key, now)
            self._on_change()

    def release(self, index: int) -> None:
        self._drop(index)
        self._on_change()

    def _drop(self, index: int) -> None:
        ledger = self._ledgers.pop(index, None)
        if ledger is not None:
            self._ended_elsewhere += ledger.ended

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._ledgers)

    # --- the decision ----------------------------------------------------------------------------------------

    def room(self, priority: int, now: float) -> str | None:
        """None when a moment of `priority` may start a recording now; else the limit that stops it
        (`daily_limit` first: waiting for a running slot cannot help a moment the day has no room for)."""
        high = priority >= self.limits.reserved_priority
        daily = self.usage(DAILY_LIMIT, now)
        if self._is_full(DAILY_LIMIT, now) or not daily.has_room(high):
            return DAILY_LIMIT
        running = self.usage(RUNNING_LIMIT, now)
        if self._is_full(RUNNING_LIMIT, now) or not running.has_room(high):
            return RUNNING_LIMIT
        return None

    def refused_by_api(self, reason: str, now: float) -> None:
        """The API answered that a limit is reached: treat the share as full, until one of our recordings
        ends (running) or until midnight in China (daily). With both limits off there is no share to fill."""
        if not self.tracking:
            return
        if reason == DAILY_LIMIT:
            self._full_until[DAILY_LIMIT] = next_cst_midnight(now)
            return
        ends = [end for ledger in self._ledgers.values() if (end := ledger.next_end(now)) is not None]
        self._full_until[RUNNING_LIMIT] = min(ends) if ends else now + DEFAULT_FULL_SECONDS
        self._full_ended = self._ended()

    def _is_full(self, limit: str, now: float) -> bool:
        until = self._full_until.get(limit)
        if until is None:
            return False
        if now >= until or (limit == RUNNING_LIMIT and self._ended() > self._full_ended):
            del self._full_until[limit]
            return False
        return True

    def _ended(self) -> int:
        return self._ended_elsewhere + sum(ledger.ended for ledger in self._ledgers.values())

    def next_change(self, now: float) -> float | None:
        """The next time room may appear without any entry changing: a window ending, the CST day turning, the
        API's limit answer lapsing. None when nothing scheduled can free room."""
        times = [end for ledger in self._ledgers.values() if (end := ledger.next_end(now)) is not None]
        times += [until for until in self._full_until.values() if until > now]
        if self.limits.daily:
            times.append(next_cst_midnight(now))
        return min(times, default=None)

    # --- the counts ------------------------------------------------------------------------------------------

    def usage(self, limit: str, now: float) -> Usage:
        total = self.limits.running if limit == RUNNING_LIMIT else self.limits.daily
        if total == NO_LIMIT:
            return Usage(limit, self._in_use(limit, now), 0, 0, limited=False)
        held_back = reserve(total, self.limits.reserved_share)
        share = sum(part(total, i, self._partitions) for i in self._ledgers)
        reserved = sum(part(held_back, i, self._partitions) for i in self._ledgers)
        return Usage(limit, self._in_use(limit, now), share, reserved)

    def _in_use(self, limit: str, now: float) -> int:
        if limit == RUNNING_LIMIT:
            return sum(ledger.running(now) for ledger in self._ledgers.values())
        today = cst_day_number(now)
        if today != self._today:
            self._today = today
            for ledger in self._ledgers.values():
                ledger.forget_days_before(today)
        return sum(ledger.started_on(today) for ledger in self._ledgers.values())
