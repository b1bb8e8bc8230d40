"""Prometheus instruments, one registry per service so several can live in one process (tests, demo)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.results = Counter("highlight_results_total", "Results published, by status.", ["status"], registry=r)
        self.dead_letters = Counter(
            "highlight_dead_letters_total",
            "Malformed moments sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.repartitioned = Counter(
            "highlight_repartitioned_total",
            "Moments re-keyed by channel through the repartition topic.",
            registry=r,
        )
        self.calls = Counter(
            "highlight_live_calls_total", "Live_Tape_Start attempts, by outcome.", ["outcome"], registry=r
        )
        self.call_seconds = Histogram(
            "highlight_live_call_seconds",
            "Latency of one Live_Tape_Start attempt.",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 15),
            registry=r,
        )
        self.in_flight = Gauge("highlight_in_flight", "Moments fetched and not yet finished.", registry=r)
        self.paused = Gauge("highlight_consumer_paused", "1 while the in-flight bound pauses fetching.", registry=r)
        self.state_entries = Gauge("highlight_state_entries", "Dedup entries held in memory.", registry=r)
        self.restore_seconds = Histogram(
            "highlight_state_restore_seconds",
            "Time to restore dedup state after an assignment.",
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.assigned = Gauge("highlight_assigned_partitions", "Input partitions owned by this instance.", registry=r)
        self.commits = Counter("highlight_commits_total", "Offset commits.", registry=r)
