"""`highlight dlq replay`: give dead letters a second chance, through the same pipeline and the same dedup.

Reads the dead-letter topic to its end as it was when the replay began (records dead-lettered meanwhile, a replayed
one among them, wait for the next replay), takes the records the selection names, and publishes each one's
original key and bytes to the moments topic with its own headers, plus where it was replayed from. The recorder
treats them like any moment: a key already recorded answers without a call, a record still invalid becomes a new
dead letter.

Stateless on purpose: a second replay of the same selection publishes the records again, and dedup answers them
(the same answer as the first time, never a second call). Nothing to keep, nothing to lose.

A truncated copy (a dead letter too large for the topic, cut to fit) is never replayed: its bytes are not the
original's. It is counted as selected but not replayable, as is a record the producer refuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from typing import TextIO

from highlight.config import Settings
from highlight.dead_letters import DEAD_LETTER_REASONS, is_truncated, replayed_headers
from highlight.errors import RecordRejected, RecordTooLarge, TopicMisconfigured
from highlight.kafka import CLIENT_ID, ChangelogReader, Partition, Producer, Record
from highlight.tools.selection import Selection, Tally, describe, reason_shown, selection_from
from highlight.topics import topic_partitions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection's flags; every value is read by `selection_of`, so a bad one is one line, exit 2."""
    group = parser.add_argument_group("selection (all given must hold; none given replays every dead letter)")
    group.add_argument(
        "--reason",
        dest="reasons",
        action="extend",
        nargs="+",
        metavar="REASON",
        help=f"the dead letters' reason, one or more of: {', '.join(DEAD_LETTER_REASONS)}",
    )
    group.add_argument("--partition", metavar="N", help="only this partition of the dead-letter topic")
    group.add_argument("--from-offset", metavar="N", help="from this offset of the dead-letter topic (included)")
    group.add_argument("--to-offset", metavar="N", help="up to this offset of the dead-letter topic (included)")
    group.add_argument(
        "--since", metavar="RFC3339", help="dead-lettered at or after this time, e.g. 2026-11-22T20:00:00+08:00"
    )
    group.add_argument("--until", metavar="RFC3339", help="dead-lettered before this time")
    group.add_argument("--limit", metavar="N", help="at most N records (partitions, then offsets, ascending)")
    parser.add_argument("--dry-run", action="store_true", help="publish nothing; print what would be replayed")


def selection_of(args: argparse.Namespace) -> Selection:
    return selection_from(
        reasons=args.reasons,
        partition=args.partition,
        from_offset=args.from_offset,
        to_offset=args.to_offset,
        since=args.since,
        until=args.until,
        limit=args.limit,
    )


async def replay(settings: Settings, selection: Selection, *, dry_run: bool, out: TextIO = sys.stdout) -> Tally:
    """Replay the selected dead letters (or, dry, only say which); one line per record, then the summary."""
    kafka = settings.kafka
    counts = await topic_partitions(kafka, [kafka.dlq_topic, kafka.moments_topic])
    for topic, setting in ((kafka.dlq_topic, "HIGHLIGHT_DLQ_TOPIC"), (kafka.moments_topic, "HIGHLIGHT_MOMENTS_TOPIC")):
        if topic not in counts:
            raise TopicMisconfigured(f"{setting} {topic!r} does not exist on {kafka.bootstrap_servers}")
    partitions = selection.partitions(counts[kafka.dlq_topic])
    tally = Tally()
    async with AsyncExitStack() as stack:
        reader = ChangelogReader(kafka, client_id=f"{CLIENT_ID}-replay")
        await reader.start()
        stack.push_async_callback(reader.stop)
        producer = None if dry_run else await stack.enter_async_context(Producer(kafka))
        for index in partitions:
            if selection.limit is not None and tally.taken >= selection.limit:
                break
            async with aclosing(_in_range(reader, Partition(kafka.dlq_topic, index), selection)) as records:
                async for record in records:
                    if selection.limit is not None and tally.taken >= selection.limit:
                        break
                    reason = reason_shown(record)
                    if not selection.takes(reason, record.timestamp_ms):
                        tally.skipped[reason] += 1
                        continue
                    tally.selected[reason] += 1
                    if is_truncated(record.headers):
                        tally.unreplayable[reason] += 1
                        print(f"not replayable, a truncated copy: {describe(record)}", file=out, flush=True)
                        continue
                    if producer is None:
                        print(f"would replay {describe(record)}", file=out, flush=True)
                        continue
                    headers = replayed_headers(record.headers, record.topic, record.partition, record.offset)
                    try:
                        # One at a time, acknowledged: a channel's moments reach the moments topic in their order.
                        await producer.send(kafka.moments_topic, record.value, key=record.key, headers=headers)
                    except (RecordTooLarge, RecordRejected) as refused:
                        # This record's own fault (written under a larger limit, say): the others still go.
                        tally.unreplayable[reason] += 1
                        print(f"not replayable, {refused}: {describe(record)}", file=out, flush=True)
                        continue
                    tally.replayed[reason] += 1
                    print(f"replayed {describe(record)}", file=out, flush=True)
    for line in tally.summary(kafka.dlq_topic, kafka.moments_topic, dry_run=dry_run):
        print(line, file=out, flush=True)
    return tally


async def _in_range(
    reader: ChangelogReader, partition: Partition, selection: Selection
) -> AsyncGenerator[Record, None]:
    """The partition's records within the selection's offsets; reading stops past the last one."""
    async with aclosing(reader.records(partition, selection.from_offset)) as batches:
        async for batch in batches:
            for record in batch:
                if selection.past_range(record.offset):
                    return
                if not selection.before_range(record.offset):
                    yield record
