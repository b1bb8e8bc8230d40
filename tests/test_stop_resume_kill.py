"""A flood on one channel while its owners are, in turn, stopped past the session timeout, resumed, and killed.

Every stopped owner's partitions are taken over and the flood answered by the others; woken, it must notice it lost
them (nothing called, nothing answered); then it is killed. Afterwards every moment has a result and no
(channel, bucket) was sent to the API twice.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from highlight.simulator import LiveSimulator
from tests.harness import Names, create_topics, moment, produce, service_env, wait_until
from tests.multiprocess import Processes, all_answered, assert_no_key_called_twice, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FLOOD = "flood-chan"
FLOOD_BUCKET_SECONDS = 5


async def test_a_flood_on_one_channel_survives_its_owners_stopped_resumed_and_killed_in_turn(
    bootstrap: str, names: Names, simulator: LiveSimulator, tmp_path: Path
) -> None:
    await create_topics(bootstrap, {names.moments: 6})
    simulator.set_config(latency_ms=(200, 300))
    # Short buckets: the flood's one channel makes a new key every few seconds, each to be called at most once.
    # A shorter session than the other tests' (6 s): each turn waits for it three times (the group to notice the
    # stop, the join, the takeover), and nothing here needs a long one.
    env = service_env(
        bootstrap, names, simulator.url, bucket_seconds=FLOOD_BUCKET_SECONDS, kafka_session_timeout_ms=4000
    )
    sent: list[dict[str, Any]] = []
    flooding = asyncio.Event()

    async def flood() -> None:
        """Ten moments a second for the flood channel, half of them with a null key (re-keyed internally)."""
        while not flooding.is_set():
            burst = [moment(f"f{len(sent) + i}", FLOOD) for i in range(2)]
            sent.extend(burst)
            await produce(bootstrap, names.moments, burst[:1])
            await produce(bootstrap, names.moments, burst[1:], key=None)
            await asyncio.sleep(0.2)

    async with processes(tmp_path) as instances:
        members = [f"member-{n}" for n in range(3)]
        pids = {name: instances.spawn(env, name) for name in members}
        flooder = asyncio.create_task(flood())
        try:
            await wait_until(lambda: _owner(instances, members) is not None, timeout=60, what="the flood answered")
            alive = list(members)
            for _turn in range(2):
                # Whoever answers the flood now is stopped past its session, the others take it over and answer
                # the flood themselves; it is woken (and must fence itself), then killed.
                victim = _owner(instances, alive)
                assert victim is not None
                alive.remove(victim)
                answered_elsewhere = sum(_flood_answers(instances, name) for name in alive)
                noticed = _noticed(instances, victim)
                pids[victim].send_signal(signal.SIGSTOP)
                await wait_until(
                    lambda before=answered_elsewhere: sum(_flood_answers(instances, n) for n in alive) > before,
                    timeout=60,
                    what=f"the others to take the flood over from {victim}",
                )
                pids[victim].send_signal(signal.SIGCONT)
                await wait_until(
                    lambda v=victim, before=noticed: _noticed(instances, v) > before,
                    what=f"{victim} to notice it lost its partitions",
                )
                await instances.kill(pids[victim])
        finally:
            flooding.set()
            await flooder
        got = await all_answered(bootstrap, names, {m["event_id"] for m in sent}, timeout=90)

    try:
        for name in members:
            assert "Traceback" not in instances.log(name), name
        answers = assert_no_key_called_twice(got.values(), simulator)
    except AssertionError:
        print(instances.story(members))  # the failure report shows what the instances did, in time order
        raise
    assert len(answers) >= 5, "the flood spans several keys"


def _noticed(instances: Processes, name: str) -> int:
    """The lines by which a woken member shows it learnt where it stands in the group: it fences itself, or, when
    it was stopped while already fenced (mid-rebalance, so waking fences nothing anew), it gives its partitions
    up or rejoins."""
    events = ("member_fenced", "partitions_revoked", "partitions_assigned")
    return sum(line["event"] in events for line in instances.lines(name))


def _flood_answers(instances: Processes, name: str) -> int:
    return sum(
        line["event"] in ("moment_recorded", "moment_answered") and line.get("channel_id") == FLOOD
        for line in instances.lines(name)
    )


def _owner(instances: Processes, names: Iterable[str]) -> str | None:
    """The instance that answered the flood last."""
    latest: dict[str, str] = {}
    for name in names:
        stamps = [
            line["timestamp"]
            for line in instances.lines(name)
            if line["event"] in ("moment_recorded", "moment_answered") and line.get("channel_id") == FLOOD
        ]
        if stamps:
            latest[name] = max(stamps)
    return max(latest, key=latest.__getitem__) if latest else None
