"""End to end, for the on-call engineer: /metrics against what was sent, consumer lag."""

from __future__ import annotations

from highlight.simulator import LiveSimulator
from tests.harness import (
    Names,
    by_event,
    create_topics,
    moment,
    produce,
    read_topic,
    reading,
    results,
    running,
    scrape_until,
    settings_for,
    value,
    wait_ready,
    wait_until,
)


async def test_metrics_count_what_was_sent(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    first = moment("m-1", "metrics-a")
    simulator.inject("ret:1204", channel="metrics-fail")
    sent = [
        first,
        moment("m-2", "metrics-b"),
        moment("m-3", "metrics-c"),
        first | {"event_id": "m-dup"},
        moment("m-old", "metrics-d", age_seconds=3600),
        moment("m-fail", "metrics-fail"),
        b"not json",
        b'{"event_id": "big", "pad": "' + b"x" * 70_000 + b'"}',
    ]
    await produce(bootstrap, names.moments, sent, key=None)
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port)
    async with running(settings):
        await wait_ready(ops_port, 200)
        got = by_event(await results(bootstrap, names.results, 6))
        await read_topic(bootstrap, names.dlq, 2)
        # Commits follow results by up to a commit interval: lag is read once the final commit is in.
        samples = await scrape_until(
            ops_port,
            lambda s: (
                reading(s, "highlight_consumer_lag", topic=names.moments, partition="0") == 0
                and reading(s, "highlight_in_flight_moments") == 0
            ),
            what="the final commit",
        )

    assert {e: d["status"] for e, d in got.items()} == {
        "m-1": "started",
        "m-2": "started",
        "m-3": "started",
        "m-dup": "duplicate",
        "m-old": "expired",
        "m-fail": "failed",
    }
    outcomes = {o: value(samples, "highlight_moments_total", outcome=o) for o in ("started", "duplicate", "failed")}
    assert outcomes == {"started": 3, "duplicate": 1, "failed": 1}
    assert value(samples, "highlight_moments_total", outcome="expired") == 1
    assert value(samples, "highlight_moments_total", outcome="in_doubt") == 0
    assert value(samples, "highlight_moments_total", outcome="dead_letter") == 2
    assert value(samples, "highlight_dead_letters_total", reason="invalid_json") == 1
    assert value(samples, "highlight_dead_letters_total", reason="too_large") == 1
    api = "live_tape_start"
    assert value(samples, "highlight_live_calls_total", api=api, result="started") == 3
    assert value(samples, "highlight_live_calls_total", api=api, result="refused") == 1
    assert value(samples, "highlight_live_call_duration_seconds_count", api=api) == 4
    assert value(samples, "highlight_live_retries_total", api=api, reason="unreachable") == 0
    assert value(samples, "highlight_in_flight_moments") == 0
    assert value(samples, "highlight_dedup_state_entries") == 4  # a, b, c and the failed key
    assert value(samples, "highlight_consumer_lag", topic=names.moments, partition="0") == 0
    assert value(samples, "highlight_live_available") == 1
    assert value(samples, "highlight_ready") == 1
    assert value(samples, "highlight_assigned_partitions") == 3  # moments, repartition and callbacks, one each
    assert 0 <= value(samples, "highlight_live_last_success_age_seconds") < 30
    assert value(samples, "highlight_build_info", version="0.1.0", api=api, python=_python()) == 1


def _python() -> str:
    import platform

    return platform.python_version()


async def test_consumer_lag_shows_moments_waiting_behind_the_in_flight_bound(
    bootstrap: str, names: Names, simulator: LiveSimulator, ops_port: int
) -> None:
    await create_topics(bootstrap, {names.moments: 1})
    # Long enough that the first calls still hang however late the scrape comes; short enough for the drain.
    simulator.set_config(latency_ms=(4500, 4500))
    await produce(bootstrap, names.moments, [moment(f"lag-{i}", f"lag-chan-{i}") for i in range(10)])
    settings = settings_for(bootstrap, names, simulator.url, metrics_port=ops_port, max_in_flight=2)
    async with running(settings):
        await wait_until(lambda: len(simulator.calls) >= 2, what="the first calls")
        samples = await scrape_until(
            ops_port,
            lambda s: (
                reading(s, "highlight_consumer_lag", topic=names.moments, partition="0") is not None
                and reading(s, "highlight_consumer_paused") == 1
            ),
            what="a committed position and the paused consumer",
        )
    # Nothing is done while the first two calls hang, so nothing past offset 0 is committed: lag is 10.
    assert value(samples, "highlight_consumer_lag", topic=names.moments, partition="0") == 10
    assert value(samples, "highlight_in_flight_moments") == 2
    assert value(samples, "highlight_consumer_paused") == 1
