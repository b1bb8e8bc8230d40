"""Results are published pipelined, yet a committed offset never passes a result the brokers have not
acknowledged: a proxy between the service and a real broker holds the acknowledgements back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from highlight.dedup import Entry, Phase, encode_entry, encode_key
from highlight.kafka import CLIENT_ID
from highlight.moment import bucket_of, parse_rfc3339
from highlight.service import Service
from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    committed_offset,
    create_topics,
    moment,
    produce,
    results,
    settings_for,
    wait_until,
)
from tests.kafka_proxy import AckStall, proxied_broker

MOMENTS = 40


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[str, AckStall]]:
    """A broker of its own that every client reaches through the proxy, and a stall of the service's answers."""
    async with proxied_broker() as kafka:
        yield kafka.bootstrap, kafka.ack_stall(CLIENT_ID)


async def duplicates_only(bootstrap: str, names: Names) -> list[dict[str, Any]]:
    """Moments whose key the state already answers: the service publishes their results and writes nothing else."""
    await create_topics(bootstrap, {names.moments: 1, names.state: 1})
    first = moment("dup-0", "ack-chan")
    bucket = bucket_of(parse_rfc3339(first["occurred_at"]), 300)
    started = Entry(Phase.STARTED, "earlier", "2026-01-01 10:00:00", "2026-01-01 10:05:00", task_id="42", attempts=1)
    await produce(bootstrap, names.state, [encode_entry(started)], key=encode_key(("ack-chan", bucket)), partition=0)
    return [first] + [moment(f"dup-{i}", "ack-chan") | {"occurred_at": first["occurred_at"]} for i in range(1, MOMENTS)]


async def all_decided_and_held(service: Service, stall: AckStall) -> None:
    """Every moment decided (its result handed to the producer) and the brokers' answer held back."""
    outbox = service._outbox
    assert outbox is not None
    await wait_until(lambda: outbox.outstanding() == MOMENTS and stall.held >= 1, what="results sent, acks held")


async def test_the_committed_offset_never_passes_a_result_the_brokers_have_not_acknowledged(
    proxied: tuple[str, AckStall], names: Names, simulator: LiveSimulator
) -> None:
    bootstrap, stall = proxied
    moments = await duplicates_only(bootstrap, names)
    async with Service(settings_for(bootstrap, names, simulator.url)) as service:
        task = asyncio.create_task(service.run())
        try:
            await wait_until(lambda: service.ready, what="the service to be ready")
            stall.stall()
            await produce(bootstrap, names.moments, moments)
            await all_decided_and_held(service, stall)
            # Every moment is decided and its lane has moved on; none is done until the brokers answer.
            await service._member._commit(force=True)
            assert await committed_offset(bootstrap, names.group, names.moments, 0) is None
            assert service._member.tracker.in_flight() == MOMENTS
            stall.release()
            await wait_until(lambda: service._member.tracker.in_flight() == 0, what="the acknowledgements")
            await service._member._commit(force=True)
            assert await committed_offset(bootstrap, names.group, names.moments, 0) == MOMENTS
        finally:
            stall.release()
            service.request_stop()
            await task
    answered = await results(bootstrap, names.results, MOMENTS)
    assert sorted(d["event_id"] for d in answered) == sorted(m["event_id"] for m in moments)
    assert {d["status"] for d in answered} == {"duplicate"}
    assert simulator.calls == []


async def test_a_shutdown_waits_for_outstanding_acknowledgements_before_it_commits(
    proxied: tuple[str, AckStall], names: Names, simulator: LiveSimulator
) -> None:
    bootstrap, stall = proxied
    moments = await duplicates_only(bootstrap, names)
    async with Service(settings_for(bootstrap, names, simulator.url)) as service:
        outbox = service._outbox
        assert outbox is not None
        settling = asyncio.Event()
        settle = outbox.settle

        async def watched_settle(partitions: Any, timeout: float) -> int:
            settling.set()
            return await settle(partitions, timeout)

        outbox.settle = watched_settle  # type: ignore[method-assign]  # observe the drain reaching the wait
        task = asyncio.create_task(service.run())
        try:
            await wait_until(lambda: service.ready, what="the service to be ready")
            stall.stall()
            await produce(bootstrap, names.moments, moments)
            await all_decided_and_held(service, stall)
            service.request_stop()
            await asyncio.wait_for(settling.wait(), 10)
            assert not task.done(), "the drain waits while acknowledgements are outstanding"
            stall.release()
            await asyncio.wait_for(task, 30)
        finally:
            stall.release()
            service.request_stop()
            await task
    assert await committed_offset(bootstrap, names.group, names.moments, 0) == MOMENTS
