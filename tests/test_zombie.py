"""Zombies: members stopped (SIGSTOP) past the session timeout while they had calls in flight and moments queued.

Four `highlight run` processes share a group. Two of them are stopped at once, each caught at precise points of
a moment's life, landed by holding their Kafka traffic at a proxy (no hook in the service) and by the
simulator's latency:

- zombie 1, "during a call": its request is at the Live API, which answers only while it is stopped;
- zombie 1, "after the call, before the outcome": the answer is in, the outcome's state write has not left;
- zombie 1, "before an intent": a moment of the same channel queued behind that one;
- zombie 2, "between intent and call": the intent is stored by the broker, its acknowledgement not delivered.

The other two take the zombies' partitions over, wait out their leases, and answer every moment. Then the
zombies wake up, get their held traffic, and must fence themselves: no key is called twice, the keys whose
calls were cut off are in_doubt, every moment is answered once, and no zombie answers or withdraws anything.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from highlight.dedup import decode_key
from highlight.kafka import home_partition
from highlight.lease import CLAIM_KEY_PREFIX, RELEASE_KEY
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    moment,
    produce,
    read_all,
    results,
    service_env,
    state_store,
    wait_until,
)
from tests.kafka_proxy import proxied_broker
from tests.multiprocess import Processes, assert_no_key_called_twice, processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

PARTITIONS = 8
ZOMBIES = ("zombie-1", "zombie-2")
SURVIVORS = ("member-3", "member-4")
BUCKET_SECONDS = 60


def settled(instances: Processes, names: Iterable[str], topic: str) -> dict[str, set[int]] | None:
    """Each instance's partitions of `topic`, once all hold one generation's complete assignment and process it
    (every takeover wait over)."""
    last = {}
    for name in names:
        lines = instances.lines(name)
        changes = [i for i, line in enumerate(lines) if line["event"] in ("partitions_assigned", "partitions_revoked")]
        if not changes or lines[changes[-1]]["event"] != "partitions_assigned":
            return None
        assigned = lines[changes[-1]]
        taken = {line["partition"] for line in lines[changes[-1] :] if line["event"] == "partition_taken_over"}
        if {int(index) for index in assigned["waiting"]} - taken:
            return None
        last[name] = assigned
    if len({line["generation"] for line in last.values()}) != 1:
        return None
    owned = {
        name: {int(p.rsplit("/", 1)[1]) for p in line["partitions"] if p.startswith(f"{topic}/")}
        for name, line in last.items()
    }
    if sorted(i for indexes in owned.values() for i in indexes) != list(range(PARTITIONS)):
        return None
    return owned


def channel_on(indexes: set[int], label: str) -> str:
    return next(f"{label}-{n}" for n in range(10_000) if home_partition(f"{label}-{n}", PARTITIONS) in indexes)


def canonical(instances: Processes, name: str) -> set[str]:
    """Event ids an instance answered (its one canonical line per moment)."""
    return {
        line["event_id"] for line in instances.lines(name) if line["event"] in ("moment_recorded", "moment_answered")
    }


def logged(instances: Processes, name: str, event: str) -> list[dict[str, Any]]:
    return [line for line in instances.lines(name) if line["event"] == event]


async def test_stopped_members_woken_after_a_takeover_call_nothing_answer_nothing_and_write_nothing(
    simulator: LiveSimulator, tmp_path: Path
) -> None:
    names = Names.unique("zombie")
    async with proxied_broker() as kafka, processes(tmp_path) as instances:
        bootstrap = kafka.bootstrap
        await create_topics(bootstrap, {names.moments: PARTITIONS})
        # Long enough an HTTP timeout that a stopped member reads its answer when it wakes, rather than time out.
        env = service_env(bootstrap, names, simulator.url, bucket_seconds=BUCKET_SECONDS, live_timeout_seconds=60)
        everyone = (*ZOMBIES, *SURVIVORS)
        pids = {name: instances.spawn(env, name) for name in everyone}
        owned: dict[str, set[int]] = {}

        def group_settled() -> bool:
            nonlocal owned
            owned = settled(instances, everyone, names.moments) or {}
            return bool(owned)

        await wait_until(group_settled, timeout=60, what="the group to settle")
        call_chan = channel_on(owned["zombie-1"], "during-call")
        resp_chan = channel_on(owned["zombie-1"], "after-call")
        ack_chan = channel_on(owned["zombie-2"], "before-call")
        late_chan = channel_on(owned["zombie-1"], "late")
        control = channel_on(owned["member-3"] | owned["member-4"], "control")

        # Zombie 1: a call the API answers only 12 s later, then a call whose outcome write is held back.
        simulator.inject("delay:12000", channel=call_chan)
        during = moment("z-call", call_chan)
        after = moment("z-resp", resp_chan)
        await produce(bootstrap, names.moments, [during])
        await wait_until(lambda: bool(simulator.calls_for(call_chan)), what="the long call to reach the API")
        outcome_held = kafka.hold_request(b'"phase":"started","event_id":"z-resp"')
        # Another bucket of the same channel: queued behind z-resp in its channel's lane, before any intent.
        queued = moment("z-lane", resp_chan, age_seconds=BUCKET_SECONDS + 1)
        await produce(bootstrap, names.moments, [after, queued])
        # Zombie 2: its intent stored by the broker, the acknowledgement kept from it.
        ack_held = kafka.hold_response(b'"phase":"intent","event_id":"z-ack"')
        acked = moment("z-ack", ack_chan)
        await produce(bootstrap, names.moments, [acked])
        await asyncio.wait_for(asyncio.gather(outcome_held.holding.wait(), ack_held.holding.wait()), 30)
        assert len(simulator.calls_for(call_chan)) == 1
        assert simulator.calls_for(resp_chan)
        # Maybe fetched by zombie 1 before it stops: then its intent waits behind the held write, and lands only
        # once a survivor has recorded the key; zombie 1 must not call after that late acknowledgement.
        late = moment("z-late", late_chan)
        await produce(bootstrap, names.moments, [late])
        for zombie in ZOMBIES:
            pids[zombie].send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()

        ctl = moment("z-ctl", control)
        await produce(bootstrap, names.moments, [ctl])
        sent = [during, after, queued, acked, late, ctl]
        expected = {m["event_id"] for m in sent}
        answered: dict[str, dict[str, Any]] = {}

        async def all_answered() -> None:
            while not expected <= answered.keys():
                answered.update(by_event(await results(bootstrap, names.results, len(sent), timeout=2)))

        await asyncio.wait_for(all_answered(), 60)
        took_over = time.monotonic() - stopped_at
        calls_before_waking = len(simulator.calls)

        for zombie in ZOMBIES:
            pids[zombie].send_signal(signal.SIGCONT)
        kafka.release_all()
        # They learn they were replaced, give up what they held, and rejoin.
        for zombie, event_id in [("zombie-1", "z-call"), ("zombie-1", "z-resp"), ("zombie-2", "z-ack")]:
            await wait_until(
                lambda z=zombie, e=event_id: e in {line["event_id"] for line in logged(instances, z, "moment_fenced")},
                what=f"{zombie} to give {event_id} up",
            )
        await wait_until(lambda: settled(instances, everyone, names.moments) is not None, timeout=60, what="rejoin")
        final = by_event(await results(bootstrap, names.results, len(sent), timeout=5))
        state = await read_all(bootstrap, names.state)
        # Zombie 1's outcome for z-resp was on its way when it stopped: it lands after the survivor's in_doubt,
        # and whoever restores that state must still answer the key in_doubt.
        resp_key = (resp_chan, final["z-resp"]["bucket"])
        async with state_store(bootstrap, names) as (store, _producer):
            await store.restore({home_partition(resp_chan, PARTITIONS)})
            restored = store.get(home_partition(resp_chan, PARTITIONS), resp_key)

    for name in everyone:
        assert "Traceback" not in instances.log(name), name
    # Every moment answered once, by a survivor; the keys cut off in_doubt, the others recorded.
    assert final.keys() == expected
    assert {e: d["status"] for e, d in final.items()} == {
        "z-call": "in_doubt",
        "z-resp": "in_doubt",
        "z-ack": "in_doubt",
        "z-lane": "started",
        "z-late": "started",
        "z-ctl": "started",
    }
    assert not (canonical(instances, "zombie-1") | canonical(instances, "zombie-2")) & expected
    # No key was sent to the API twice; a woken zombie sent nothing at all.
    assert len(simulator.calls) == calls_before_waking
    assert_no_key_called_twice(final.values(), simulator)
    assert len(simulator.calls) == len(sent) - 1
    assert simulator.calls_for(ack_chan) == [], "the stored intent made the key in_doubt: nobody called it"
    # The zombie that got its answer after it was replaced dropped it, and logged the recording to find it.
    (dropped,) = logged(instances, "zombie-1", "live_call_outcome_dropped")
    assert dropped["task_id"] == str(simulator.calls_for(call_chan)[0].task_id)
    # The survivors waited out the zombies' leases before touching their partitions.
    waits = [line["waited_seconds"] for s in SURVIVORS for line in logged(instances, s, "partition_taken_over")]
    assert len(waits) >= len(owned["zombie-1"] | owned["zombie-2"]), waits
    assert min(waits) >= 6.0, waits
    assert took_over > 6.0
    phases = [orjson.loads(r.value)["phase"] for r in _entries(state) if decode_key(r.key) == resp_key]
    assert phases == ["intent", "in_doubt", "started"], "the late outcome landed after the survivor's verdict"
    assert restored is not None
    assert restored.phase.value == "in_doubt", "a final verdict outlives a late write"
    # Zombie 2 withdrew nothing: its key's last state record is the survivor's in_doubt, not a deletion.
    last = _last_entries(state)
    (ack_key,) = [k for k in last if k[0] == ack_chan]
    assert last[ack_key] is not None
    assert orjson.loads(last[ack_key])["phase"] == "in_doubt"


def _entries(records: list[Any]) -> list[Any]:
    """The state records that are dedup entries: not the owners' release and claim records."""
    return [r for r in records if r.key != RELEASE_KEY and not r.key.startswith(CLAIM_KEY_PREFIX)]


def _last_entries(records: list[Any]) -> dict[tuple[str, int], bytes | None]:
    return {decode_key(record.key): record.value for record in _entries(records)}
