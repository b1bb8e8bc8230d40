#!/usr/bin/env python3
"""The pure per-record work of an answered duplicate, step by step, in microseconds (no broker, no event loop).

    python bench/per_record.py              # bucket and window mode, best of 7 repeats
    python bench/per_record.py --repeat 3

What `Recorder._answer_now` does for a moment the state answers, minus the outbox and the metrics: parse the
record's value (`parse_moment`, schema validation included), read the candidates (`StateStore.candidates`),
decide (`decide_among`), build the result (`result_document`) and encode it (`encode_result`). The moments are
shaped like the bench's duplicate-heavy ones (event_id, channel_id, occurred_at in milliseconds, `Z`); a second
row gives them attributes. Compare rows within one run: the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import timeit
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from highlight.dedup import BUCKET_MODE, WINDOW_MODE, DedupRules, Entry, Phase, bucket_key, decide_among, window_key
from highlight.moment import compile_validators, parse_moment
from highlight.recording import format_cst, now_utc
from highlight.results import encode_result, result_document
from highlight.state import StateStore

BUCKET_SECONDS = 300
MAX_AGE = 120
CHANNELS = 400


class _Producer:
    """Acknowledges every write at once: the store's tables are what is measured here, not Kafka."""

    def __init__(self) -> None:
        self._offset = 0

    async def send(self, *_args: Any, **_kwargs: Any) -> int:
        self._offset += 1
        return self._offset - 1


def _store(mode: str, now: datetime) -> StateStore:
    store = StateStore(
        "state",
        _Producer(),  # type: ignore[arg-type] -- only `send` is used by `put`
        None,  # type: ignore[arg-type] -- no restore here
        bucket_seconds=BUCKET_SECONDS,
        max_event_age_seconds=MAX_AGE,
        window_mode=mode == WINDOW_MODE,
    )
    store._tables[0] = {}  # what a restore of an empty partition leaves
    start, end = format_cst(now - timedelta(seconds=5)), format_cst(now + timedelta(seconds=295))

    async def fill() -> None:
        for channel in range(CHANNELS):
            moment = parse_moment(_value(f"first-{channel}", f"dup-{channel}", now))
            key = bucket_key(moment, BUCKET_SECONDS) if mode == BUCKET_MODE else window_key(moment, BUCKET_SECONDS)
            started = Entry(
                Phase.STARTED, moment.event_id, start, end, task_id="1234567890123", attempts=1, api="live_tape_start"
            )
            await store.put(0, key, started)

    asyncio.run(fill())
    return store


def _value(event_id: str, channel_id: str, now: datetime, **extra: Any) -> bytes:
    occurred = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"event_id": event_id, "channel_id": channel_id, "occurred_at": occurred, **extra})


def _time(step: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(step, number=number, repeat=repeat)) / number * 1e6


def run(mode: str, repeat: int, number: int, extra: dict[str, Any]) -> list[tuple[str, float]]:
    now = now_utc()
    store = _store(mode, now)
    rules = DedupRules(mode, BUCKET_SECONDS, 60, MAX_AGE)
    value = _value("d-7", "dup-17", now, **extra)
    moment = parse_moment(value)
    found = store.candidates(0, moment)
    decision = decide_among(moment, found, now, rules)
    assert decision.status == "duplicate", decision
    bucket = moment.bucket(BUCKET_SECONDS)
    document = result_document(moment, bucket, BUCKET_SECONDS, "duplicate", decision.entry, now)

    def whole() -> bytes:
        m = parse_moment(value)
        at = now_utc()
        d = decide_among(m, store.candidates(0, m), at, rules)
        b = m.bucket(BUCKET_SECONDS)
        return encode_result(result_document(m, b, BUCKET_SECONDS, d.status or "expired", d.entry, at))

    steps: list[tuple[str, Callable[[], object]]] = [
        ("parse_moment", lambda: parse_moment(value)),
        ("now_utc", now_utc),
        ("StateStore.candidates", lambda: store.candidates(0, moment)),
        ("decide_among", lambda: decide_among(moment, found, now, rules)),
        ("Moment.bucket", lambda: moment.bucket(BUCKET_SECONDS)),
        ("result_document", lambda: result_document(moment, bucket, BUCKET_SECONDS, "duplicate", decision.entry, now)),
        ("encode_result", lambda: encode_result(document)),
        ("all of the above", whole),
    ]
    return [(name, _time(step, number, repeat)) for name, step in steps]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="repeats of each timing; the best counts")
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    args = parser.parse_args(argv)
    compile_validators()
    shapes = {"plain": {}, "attributes": {"attributes": {"score": 0.93, "source": "chat", "tags": ["a", "b"]}}}
    rows = {
        (mode, shape): run(mode, args.repeat, args.number, extra)
        for mode in (BUCKET_MODE, WINDOW_MODE)
        for shape, extra in shapes.items()
    }
    columns = list(rows)
    print("| step, µs per record | " + " | ".join(f"{mode}, {shape}" for mode, shape in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for i, (name, _) in enumerate(rows[columns[0]]):
        print(f"| {name} | " + " | ".join(f"{rows[column][i][1]:.2f}" for column in columns) + " |")
    print(f"\n(best of {args.repeat} x {args.number:,} calls; {datetime.now(UTC):%H:%M:%S} UTC)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
