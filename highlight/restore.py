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

import structlog

from highlight.dedup import DedupKey, Entry, Phase, decode_key, expires_at
from highlight.kafka import Partition
from highlight.lease import CLAIM_KEY_PREFIX, OWNER_HEADER, RELEASE_KEY, Release, decode_claim, decode_release

log = structlog.get_logger("highlight.state")

# How `encode_entry` begins a final entry (it writes the phase first).
FINAL_PREFIXES = {Phase.STARTED: b'{"phase":"started"', Phase.IN_DOUBT: b'{"phase":"in_doubt"'}

Headers = Sequence[tuple[str, bytes | None]]
Apply = Callable[[Partition, bytes | None, bytes | None, Headers], None]


def replayer(
    tables: dict[int, dict[DedupKey, Entry | bytes]],
    tails: dict[int, Release | None],
    claims: dict[int, bytes],
    changed: set[int] | None,
    *,
    now: float,
    bucket_seconds: int,
    max_age: int,
    keep_until: Callable[[DedupKey, Entry | bytes], float],
) -> Apply:
    """What one read of the log applies, record by record, to the store's tables: per index, its table, its tail
    (the last record if it is a release) and the token of the claim that counts. `changed`, if given, gathers
    the indexes where a record counted.

    A closure over locals, not a method, and nothing spent on an entry (the commonest record) to find a claim:
    it runs for each of a million records at a restore, where every lookup shows.
    """

    def apply(partition: Partition, raw_key: bytes | None, raw_value: bytes | None, headers: Headers = ()) -> None:
        index = partition.partition
        if headers:
            counting = claims.get(index)
            # Ours is a record's only header: read in place.
            if counting is not None and headers[0][0] == OWNER_HEADER and headers[0][1] != counting:
                # Put by an owner before a later claim, sent only after it (a stalled member woken).
                log.info("state_late_write_ignored", partition=index, reason="earlier_owner")
                return
        tail: Release | None = None
        if raw_key == RELEASE_KEY:
            try:
                tail = decode_release(raw_value)
            except ValueError:
                log.warning("state_release_unreadable", partition=index, value=(raw_value or b"")[:100])
        elif raw_key is not None:
            table = tables[index]
            try:
                key = decode_key(raw_key)
                current = table.get(key)
                # The key alone decides for every entry inside its bucket's life; only older ones are read.
                expired = expires_at(key[1], bucket_seconds, max_age) <= now
                if (
                    current is not None
                    and final_phase(current) not in (None, final_phase(raw_value))
                    and not (expired and keep_until(key, current) <= now)
                ):
                    log.info("state_late_write_ignored", partition=index, channel=key[0], bucket=key[1])
                elif raw_value is None or (expired and keep_until(key, raw_value) <= now):
                    table.pop(key, None)
                else:
                    table[key] = raw_value
            except (ValueError, TypeError):
                if raw_key.startswith(CLAIM_KEY_PREFIX):
                    # Not a dedup key (a JSON array) but a claim, which carries no header.
                    _claim(claims, tails, index, claims.get(index), raw_value)
                    return
                log.warning("state_record_unreadable", partition=index, key=raw_key[:100])
        if changed is not None:
            changed.add(index)
        tails[index] = tail

    return apply


def _claim(
    claims: dict[int, bytes], tails: dict[int, Release | None], index: int, counting: bytes | None, raw: bytes | None
) -> None:
    try:
        claim = decode_claim(raw)
    except ValueError:
        log.warning("state_claim_unreadable", partition=index, value=(raw or b"")[:100])
        return
    if counting is None or (claim.after is not None and claim.after.encode() == counting):
        claims[index] = claim.owner.encode()
        tails[index] = None
    else:
        # A stalled member's claim, naming one that no longer counts.
        log.info("state_late_claim_ignored", partition=index, member_id=claim.member_id)


def final_phase(value: Entry | bytes | None) -> Phase | None:
    """The entry's phase if it is final (`started`, `in_doubt`), else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return next((phase for phase, prefix in FINAL_PREFIXES.items() if value.startswith(prefix)), None)
    return value.phase if value.phase in FINAL_PREFIXES else None
