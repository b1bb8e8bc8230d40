"""Reading the state log back: which record counts, record by record. Pure: the store feeds it what its changelog
reader reads, and it updates the store's tables.

Three rules decide, in this order:
- **Claims** (`highlight.lease.Claim`): a claim counts if it is the first read, or names the claim that counts
  now. From a claim on, a record put under another claim (its `highlight.owner` header) is a stalled earlier
  owner's late write, and counts for nothing. Records without the header (versions before claims) count.
- **Final entries:** a recording, or `in_doubt`, is final; no owner writes another phase after it (a clip only
  adds its file), so a later record of another phase is a late write of a version before claims.
- **Expiry:** a record whose bucket's life is over, and that no count needs any more, deletes its key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from highlight.dedup import DedupKey, Entry, Phase, decode_key, expires_at
from highlight.kafka import Partition
from highlight.lease import CLAIM_KEY_PREFIX, OWNER_HEADER, RELEASE_KEY, Release, decode_claim, decode_release

log = structlog.get_logger("highlight.state")

# How `encode_entry` begins a final entry (it writes the phase first).
FINAL_PREFIXES = {Phase.STARTED: b'{"phase":"started"', Phase.IN_DOUBT: b'{"phase":"in_doubt"'}


@dataclass(slots=True)
class Replay:
    """One read of the log into the store's tables: per index, its table, its tail (the last record if it is a
    release) and the token of the claim that counts. `changed` names the indexes where a record counted."""

    tables: dict[int, dict[DedupKey, Entry | bytes]]
    tails: dict[int, Release | None]
    claims: dict[int, bytes]
    now: float
    bucket_seconds: int
    max_age: int
    keep_until: Callable[[DedupKey, Entry | bytes], float]
    changed: set[int] = field(default_factory=set)

    def apply(
        self,
        partition: Partition,
        raw_key: bytes | None,
        raw_value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        index = partition.partition
        counting = self.claims.get(index)
        if raw_key is not None and raw_key.startswith(CLAIM_KEY_PREFIX):
            self._claim(index, counting, raw_value)
            return
        if counting is not None and headers:
            # Ours is a record's only header: read in place, as this runs for every record of a restore.
            name, owner = headers[0]
            if name == OWNER_HEADER and owner != counting:
                # Put by an owner before a later claim, sent only after it (a stalled member woken).
                log.info("state_late_write_ignored", partition=index, reason="earlier_owner")
                return
        self.changed.add(index)
        tail: Release | None = None
        if raw_key == RELEASE_KEY:
            try:
                tail = decode_release(raw_value)
            except ValueError:
                log.warning("state_release_unreadable", partition=index, value=(raw_value or b"")[:100])
        elif raw_key is not None:
            self._entry(index, raw_key, raw_value)
        self.tails[index] = tail

    def _claim(self, index: int, counting: bytes | None, raw_value: bytes | None) -> None:
        try:
            claim = decode_claim(raw_value)
        except ValueError:
            log.warning("state_claim_unreadable", partition=index, value=(raw_value or b"")[:100])
            return
        if counting is None or (claim.after is not None and claim.after.encode() == counting):
            self.claims[index] = claim.owner.encode()
            self.tails[index] = None
        else:
            # A stalled member's claim, naming one that no longer counts.
            log.info("state_late_claim_ignored", partition=index, member_id=claim.member_id)

    def _entry(self, index: int, raw_key: bytes, raw_value: bytes | None) -> None:
        try:
            self._apply_entry(self.tables[index], index, decode_key(raw_key), raw_value)
        except (ValueError, TypeError):
            log.warning("state_record_unreadable", partition=index, key=raw_key[:100])

    def _apply_entry(
        self, table: dict[DedupKey, Entry | bytes], index: int, key: DedupKey, raw_value: bytes | None
    ) -> None:
        current = table.get(key)
        # The key alone decides for every entry inside its bucket's life; only older ones are read.
        expired = expires_at(key[1], self.bucket_seconds, self.max_age) <= self.now
        if (
            current is not None
            and final_phase(current) not in (None, final_phase(raw_value))
            and not (expired and self.keep_until(key, current) <= self.now)
        ):
            log.info("state_late_write_ignored", partition=index, channel=key[0], bucket=key[1])
        elif raw_value is None or (expired and self.keep_until(key, raw_value) <= self.now):
            table.pop(key, None)
        else:
            table[key] = raw_value


def final_phase(value: Entry | bytes | None) -> Phase | None:
    """The entry's phase if it is final (`started`, `in_doubt`), else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return next((phase for phase, prefix in FINAL_PREFIXES.items() if value.startswith(prefix)), None)
    return value.phase if value.phase in FINAL_PREFIXES else None
