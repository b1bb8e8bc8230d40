"""The in-flight bound, shared among partitions so that a backlog on one never stops the others. Pure.

The fairness rule is per partition, because a channel's backlog can only be held back by its partition: Kafka
hands out a partition's records in order, so a record cannot be taken past the hot channel's without holding
everything before it in memory. What this gives:

- Channels of other partitions are never stopped by a hot channel. No partition holds more than the bound minus
  a small spare, and the spare is only for partitions below their fair share: a partition that holds nothing
  always gets a slot at once, and freed slots go to the partitions holding least first (the caller draws in
  that order), so shares converge to max-min fairness without pre-dividing the bound, which would idle slots
  whenever traffic is uneven.
- Channels of the hot channel's own partition wait for the records before theirs. The hot channel's
  duplicates are answered in one synchronous pass each (highlight.lanes), so that backlog drains at about
  the rate the partition can be read; while the hot channel waits on a call, the partition's share is a
  bounded buffer in which the other channels of that partition still run.
- Memory stays bounded: never more than `limit` records in flight in all.

A lane (one channel) has no share of its own: with the partition as the unit of fetching, a per-lane cap could
only pause the whole partition, which is what the partition's share already does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from highlight.kafka import Partition

# The part of the bound kept for partitions below their fair share: 1/32 of it (8 of the default 256). A bound
# under 32 keeps none: there a partition holding nothing waits for the next slot to free up, which it gets first.
SPARE_DIVISOR = 32


class Window:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight bound must be at least 1")
        self.limit = limit
        self.spare = limit // SPARE_DIVISOR

    def fair_share(self, busy: int) -> int:
        """Each of `busy` partitions' share of the bound; never all of it, so the spare stays free."""
        return max(1, min(self.limit - self.spare, self.limit // max(1, busy)))

    def allowance(self, held: int, total: int, busy: int) -> int:
        """How many more records a partition holding `held` may take, with `total` in flight over `busy`
        partitions (those holding any)."""
        free = self.limit - total
        if free <= 0:
            return 0
        fair = self.fair_share(busy if held else busy + 1)
        if held < fair:
            # Up to its fair share from any free slot, the spare included; beyond it like everyone else.
            return min(free, max(fair - held, free - self.spare))
        return max(0, free - self.spare)

    @staticmethod
    def order(partitions: Iterable[Partition], held: Callable[[Partition], Any]) -> list[Partition]:
        """Who draws first: the partition holding least (any sortable measure), so freed slots reach it before
        the others."""
        return sorted(partitions, key=lambda partition: (held(partition), partition))
