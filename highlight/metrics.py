"""Prometheus instruments, one registry per service so several can live in one process (tests, demo).

Names follow the Prometheus conventions: a `highlight_` prefix, `_total` on counters, base units as suffixes.
Label values are small closed sets, never ids, so the series count stays bounded.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from highlight import __version__

# `_created` samples double every counter's series for a timestamp no dashboard here uses.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

OUTCOMES = ("started", "duplicate", "failed", "expired", "in_doubt", "skipped", "dead_letter")
CALL_RESULTS = ("started", "refused", "rate_limited", "limit_reached", "unreachable", "in_doubt", "credentials")
SKIP_REASONS = ("running_limit", "daily_limit")
LIMITS = ("running", "daily")
OUTAGE_REASONS = ("credentials", "unreachable")
MATCHED_BY = ("task_id", "window")
# Records of the callbacks topic that make no clip and are not recording files.
IGNORED_CALLBACKS = ("other_event", "unreadable", "misplaced")
# What the receiver answered: `stored` is the 200; the others are 401, 401, 400, 413 and 503.
VERDICTS = ("stored", "bad_sign", "expired", "malformed", "too_large", "kafka_unavailable")
# Seconds from a recording window's end to its clip: Live usually needs a few minutes for a file.
CLIP_DELAY_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
FENCE_REASONS = ("rebalance", "membership_lost", "left_group", "coordinator")
HANDOVERS = ("first_generation", "released", "lease_wait")

LagSource = Callable[[], Iterable[tuple[str, int, int]]]
# Per limit (`running`, `daily`): recordings counted against this instance's share, and that share.
BudgetSource = Callable[[], Iterable[tuple[str, int, int]]]


class _LagCollector(Collector):
    """Lag is read at scrape time: high-water marks move with every fetch, commits every second."""

    def __init__(self) -> None:
        self.source: LagSource | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "highlight_consumer_lag",
            "High-water mark minus committed offset, per owned partition.",
            labels=["topic", "partition"],
        )
        if self.source is not None:
            for topic, partition, lag in self.source():
                family.add_metric([topic, str(partition)], lag)
        yield family


class _BudgetCollector(Collector):
    """The budget is read at scrape time: windows end and days turn without any event to count."""

    def __init__(self) -> None:
        self.source: BudgetSource | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "highlight_recording_budget_in_use",
            "Recordings counted against this instance's share: running (windows not ended) and started today (CST).",
            labels=["limit"],
        )
        share = GaugeMetricFamily(
            "highlight_recording_budget_share",
            "This instance's share of the account's limit (its partitions' parts); 0 when the limit is off.",
            labels=["limit"],
        )
        # Until the service wires its budget (it owns no partition yet), both limits read 0.
        readings = self.source() if self.source is not None else [(limit, 0, 0) for limit in LIMITS]
        for limit, used, of in readings:
            in_use.add_metric([limit], used)
            share.add_metric([limit], of)
        yield in_use
        yield share


class Metrics:
    def __init__(self, api: str = "live_tape_start") -> None:
        self.api = api
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("highlight_build", "The running version and recording backend.", registry=r).info(
            {"version": __version__, "api": api, "python": platform.python_version()}
        )
        self.moments = Counter("highlight_moments_total", "Moments consumed, by outcome.", ["outcome"], registry=r)
        self.skipped = Counter(
            "highlight_moments_skipped_total",
            "Moments answered skipped: no room in the budget, or the API's own limit answer, by limit.",
            ["reason"],
            registry=r,
        )
        self._budget = _BudgetCollector()
        r.register(self._budget)
        self.budget_waiting = Gauge(
            "highlight_recording_budget_waiting_moments",
            "Moments waiting for room in the budget (no call made yet).",
            registry=r,
        )
        self.dead_letters = Counter(
            "highlight_dead_letters_total",
            "Records sent to the dead-letter topic, by reason (unprocessable: a record our own code failed on).",
            ["reason"],
            registry=r,
        )
        self.repartitioned = Counter(
            "highlight_moments_repartitioned_total",
            "Moments re-keyed to their channel's home partition through the repartition topic.",
            registry=r,
        )
        self.calls = Counter(
            "highlight_live_calls_total", "Live API attempts, by result class.", ["api", "result"], registry=r
        )
        self.call_seconds = Histogram(
            "highlight_live_call_duration_seconds",
            "Latency of one Live API attempt.",
            ["api"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 15),
            registry=r,
        )
        self.retries = Counter(
            "highlight_live_retries_total",
            "Attempts repeated after a retriable failure, by the failure's class.",
            ["api", "reason"],
            registry=r,
        )
        self.live_available = Gauge(
            "highlight_live_available",
            "0 while paused because the API refuses our credentials or is unreachable past the retry budget.",
            registry=r,
        )
        self.live_available.set(1)
        self.outages = Counter(
            "highlight_live_outages_total", "Live API outages entered, by reason.", ["reason"], registry=r
        )
        self._last_success = time.monotonic()
        Gauge(
            "highlight_live_last_success_age_seconds",
            "Seconds since the last successful Live API call (since start while there has been none).",
            registry=r,
        ).set_function(lambda: time.monotonic() - self._last_success)
        self.in_flight = Gauge("highlight_in_flight_moments", "Moments fetched and not yet answered.", registry=r)
        self.paused = Gauge(
            "highlight_consumer_paused",
            "1 while fetching is paused for every owned partition (each holds its share of the in-flight bound, "
            "or an outage).",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "highlight_paused_partitions",
            "Owned partitions whose fetching is paused: they hold their share of the in-flight bound (or an outage).",
            registry=r,
        )
        self._lag = _LagCollector()
        r.register(self._lag)
        self.assigned = Gauge("highlight_assigned_partitions", "Input partitions owned by this instance.", registry=r)
        self.state_entries = Gauge("highlight_dedup_state_entries", "Dedup entries held in memory.", registry=r)
        self.restore_seconds = Histogram(
            "highlight_state_restore_seconds",
            "Time to restore dedup state after an assignment.",
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.commits = Counter("highlight_commits_total", "Offset commits.", registry=r)
        self.commit_failures = Counter(
            "highlight_commit_failures_total",
            "Failed offset commits (retried; their moments are answered again from state).",
            registry=r,
        )
        self.ready = Gauge("highlight_ready", "1 when /readyz answers 200.", registry=r)
        self.clips = Counter(
            "highlight_clips_total", "Clip events published, by how the file was matched.", ["matched_by"], registry=r
        )
        self.clip_delay_seconds = Histogram(
            "highlight_clip_delay_seconds",
            "Seconds from a recording window's end to its clip's publication (0 for a file ready before the end).",
            buckets=CLIP_DELAY_BUCKETS,
            registry=r,
        )
        self.files_unmatched = Counter(
            "highlight_clip_files_unmatched_total",
            "Recording files that matched no recording this service started (no clip).",
            registry=r,
        )
        self.file_repeats = Counter(
            "highlight_clip_file_repeats_total",
            "Recording-file notifications for a file whose clip was already published (Live re-sends).",
            registry=r,
        )
        self.callbacks_ignored = Counter(
            "highlight_callbacks_ignored_total",
            "Records of the callbacks topic that are not recording-file notifications, by reason.",
            ["reason"],
            registry=r,
        )
        self.lease_remaining = Gauge(
            "highlight_lease_remaining_seconds",
            "How long the last successful heartbeat still lets this instance start calls (0 when it cannot).",
            registry=r,
        )
        self.fences = Counter(
            "highlight_fences_total",
            "Times this instance stopped starting calls because it could not prove it still owns its partitions.",
            ["reason"],
            registry=r,
        )
        self.fenced_moments = Counter(
            "highlight_fenced_moments_total",
            "Moments given up unanswered and uncommitted at the fence, for the partition's next owner.",
            registry=r,
        )
        self.takeovers = Counter(
            "highlight_takeovers_total",
            "Partition indexes taken over, by how the previous owner handed them over.",
            ["handover"],
            registry=r,
        )
        self.takeover_wait = Histogram(
            "highlight_takeover_wait_seconds",
            "How long a taken-over partition index waited for earlier owners' leases before processing.",
            buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120),
            registry=r,
        )
        # Pre-create the label sets an alert or dashboard expects, so a rate() has a zero to start from.
        for outcome in OUTCOMES:
            self.moments.labels(outcome)
        for result in CALL_RESULTS:
            self.calls.labels(api, result)
        for reason in OUTAGE_REASONS:
            self.outages.labels(reason)
        # The one reason that means a bug of ours: an alert on it needs a zero to start from.
        self.dead_letters.labels("unprocessable")
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        for matched_by in MATCHED_BY:
            self.clips.labels(matched_by)
        for reason in IGNORED_CALLBACKS:
            self.callbacks_ignored.labels(reason)
        for reason in FENCE_REASONS:
            self.fences.labels(reason)
        for handover in HANDOVERS:
            self.takeovers.labels(handover)

    def call_succeeded(self) -> None:
        self._last_success = time.monotonic()

    def watch_lag(self, source: LagSource) -> None:
        self._lag.source = source

    def watch_budget(self, source: BudgetSource) -> None:
        self._budget.source = source


class ReceiverMetrics:
    """The instruments of `highlight callbacks`, in a registry of their own: a receiver has no moments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("highlight_build", "The running version.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.notifications = Counter(
            "highlight_callback_notifications_total",
            "Live event notifications received, by event type and what the receiver made of them.",
            ["event_type", "verdict"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "highlight_callback_store_seconds",
            "Time to store one authentic notification in the callbacks topic (acknowledged), or to give up.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.ready = Gauge("highlight_callbacks_ready", "1 when the receiver's /readyz answers 200.", registry=r)
        for verdict in VERDICTS:
            self.notifications.labels("100", verdict)
        for verdict in ("malformed", "too_large"):
            self.notifications.labels("unknown", verdict)
