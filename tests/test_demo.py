"""`highlight demo`: the burst's shape (pure), and the real command as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from highlight import moment
from highlight.demo.moments import (
    STALE_AGE,
    Tally,
    check_sizes,
    clip_line,
    make_burst,
    result_line,
    summary_lines,
    window_cst,
)

NOW = datetime(2024, 5, 1, 3, 1, 30, tzinfo=UTC)  # 11:01:30 CST
WINDOW = re.compile(r"\d\d:\d\d:\d\d-\d\d:\d\d:\d\d CST")
SUMMARY_LINE = re.compile(r"^([a-z][a-z ]*): (\d+(?:\.\d+)?)", re.MULTILINE)
ANSI = re.compile(r"\x1b\[")


# --- the burst, pure ------------------------------------------------------------------------------


def test_burst_has_one_stale_one_malformed_and_every_channel_offline_one_included() -> None:
    burst = make_burst(50, 6, NOW, seed=3)
    kinds = Counter(record.kind for record in burst.records)
    assert len(burst.records) == 50
    assert kinds == {"live": 48, "stale": 1, "malformed": 1}
    assert burst.offline_channel in burst.channels
    live_channels = {r.channel_id for r in burst.records if r.kind == "live"}
    assert live_channels == set(burst.channels), "every channel, the offline one included, gets a live moment"
    (stale,) = (r for r in burst.records if r.kind == "stale")
    assert stale.channel_id != burst.offline_channel, "the stale moment must come back expired, not failed"


def test_burst_records_parse_as_the_recorder_will_parse_them() -> None:
    burst = make_burst(20, 4, NOW)
    for record in burst.records:
        assert record.key == record.channel_id.encode(), "keyed by channel_id, as upstream should"
        if record.kind == "malformed":
            with pytest.raises(moment.InvalidMoment) as invalid:
                moment.parse_moment(record.value)
            assert invalid.value.reason == "invalid_json"
            continue
        parsed = moment.parse_moment(record.value)
        assert parsed.event_id == record.event_id
        assert parsed.channel_id == record.channel_id
        assert parsed.occurred_at == (NOW - STALE_AGE if record.kind == "stale" else NOW)


def test_burst_live_moments_share_one_bucket_and_the_stale_one_is_older_than_max_age() -> None:
    burst = make_burst(30, 5, NOW)
    parsed = [moment.parse_moment(r.value) for r in burst.records if r.kind != "malformed"]
    assert len({m.bucket(300) for m in parsed if m.occurred_at == NOW}) == 1
    (stale,) = (r.event_id for r in burst.records if r.kind == "stale")
    assert [m.event_id for m in parsed if NOW - m.occurred_at > timedelta(seconds=120)] == [stale]


def test_burst_is_deterministic_for_a_seed_and_varies_with_it() -> None:
    assert make_burst(40, 6, NOW, seed=11) == make_burst(40, 6, NOW, seed=11)
    shapes = {tuple((r.channel_id, r.kind) for r in make_burst(40, 6, NOW, seed=s).records) for s in range(5)}
    assert len(shapes) > 1


def test_burst_event_ids_are_unique() -> None:
    burst = make_burst(200, 20, NOW)
    ids = [r.event_id for r in burst.records if r.event_id is not None]
    assert len(ids) == len(set(ids)) == 199


def test_expected_summary_is_one_recording_per_online_channel_and_a_failure_per_offline_moment() -> None:
    burst = make_burst(50, 6, NOW, seed=7)
    live = [r for r in burst.records if r.kind == "live"]
    offline = sum(1 for r in live if r.channel_id == burst.offline_channel)
    expected = burst.expected()
    assert expected.started == 5
    assert expected.clips == 5, "a clip per recording"
    assert expected.failed == offline
    assert expected.duplicates == len(live) - offline - 5
    assert (expected.expired, expected.dead_letters, expected.in_doubt) == (1, 1, 0)
    total = expected.started + expected.duplicates + expected.failed + expected.expired + expected.dead_letters
    assert total == expected.moments == 50


@pytest.mark.parametrize(("moments", "channels"), [(7, 6), (10, 1), (-1, 6)])
def test_burst_sizes_that_cannot_hold_every_case_are_refused(moments: int, channels: int) -> None:
    with pytest.raises(ValueError, match=r"--moments|--channels"):
        check_sizes(moments, channels)


def test_an_empty_burst_is_allowed_for_keep_running() -> None:
    burst = make_burst(0, 6, NOW)
    assert burst.records == ()
    assert Tally(burst).as_expected


def test_tally_counts_a_redelivered_answer_once() -> None:
    burst = make_burst(8, 2, NOW)
    tally = Tally(burst)
    first = next(r for r in burst.records if r.kind == "live")
    document = {"event_id": first.event_id, "channel_id": first.channel_id, "status": "expired"}
    assert tally.add_result(document)
    assert not tally.add_result(document)
    assert tally.observed().expired == 1
    assert tally.answered == 1
    assert not tally.complete


def test_tally_counts_each_clip_of_the_bursts_recordings_once_and_completes_with_them() -> None:
    burst = make_burst(8, 2, NOW)
    tally = Tally(burst)
    starters = {}
    for record in burst.records:
        if record.event_id is None:
            tally.add_dead_letter("invalid_json", from_burst=True)
            continue
        status = "expired" if record.kind == "stale" else "failed"
        if record.kind == "live" and record.channel_id != burst.offline_channel:
            status = "duplicate" if record.channel_id in starters else "started"
            starters.setdefault(record.channel_id, record.event_id)
        tally.add_result({"event_id": record.event_id, "channel_id": record.channel_id, "status": status})
    assert tally.answered == 8
    assert not tally.complete, "answered, but the clip is not in"
    (channel, starter), *_ = starters.items()
    clip = {"file_id": "f-1", "channel_id": channel, "started_by": starter, "video_url": "http://v/f-1.flv"}
    assert tally.add_clip(clip)
    assert not tally.add_clip(clip), "a repeated clip counts once"
    assert not tally.add_clip(clip | {"file_id": "f-2", "started_by": "someone-else"}), "not the burst's"
    assert tally.complete
    assert tally.as_expected
    assert tally.video_urls() == {channel: "http://v/f-1.flv"}
    lines = summary_lines(burst, tally, 1.0, interrupted=False)
    assert dict(SUMMARY_LINE.findall("\n".join(lines)))["clips"] == "1"
    assert f"  {channel}: http://v/f-1.flv" in lines


def test_clip_line_shows_the_channel_the_window_and_the_video_url() -> None:
    line = clip_line(
        {
            "channel_id": "chan-02",
            "file_id": "528589078",
            "video_url": "http://1234.vod2.myqcloud.com/x/528589078/f0.flv",
            "start_time": "2024-05-01 11:08:34",
            "end_time": "2024-05-01 11:13:34",
        }
    )
    assert line.split() == [
        "clip", "chan-02", "file", "528589078", "11:08:34-11:13:34", "CST", "http://1234.vod2.myqcloud.com/x/528589078/f0.flv"
    ]  # fmt: skip


def test_result_line_shows_status_channel_task_id_and_cst_window() -> None:
    line = result_line(
        {
            "event_id": "m-0002",
            "channel_id": "chan-02",
            "status": "started",
            "task_id": "1234567890123456789",
            "start_time": "2024-05-01 11:08:34",
            "end_time": "2024-05-01 11:13:34",
        }
    )
    assert line.split() == ["started", "chan-02", "task", "1234567890123456789", "11:08:34-11:13:34", "CST", "m-0002"]
    failed = result_line(
        {
            "event_id": "m-0003",
            "channel_id": "chan-04",
            "status": "failed",
            "error": {"code": "1301", "message": "has not live stream"},
            "start_time": "2024-05-01 11:08:34",
            "end_time": "2024-05-01 11:13:34",
        }
    )
    assert failed.startswith("failed      chan-04    ret 1301 ")
    assert "11:08:34-11:13:34 CST" in failed
    assert window_cst(None, None) == "-"


def test_summary_lines_read_as_name_and_number() -> None:
    burst = make_burst(10, 3, NOW)
    lines = "\n".join(summary_lines(burst, Tally(burst), 1.25, interrupted=True))
    found = dict(SUMMARY_LINE.findall(lines))
    assert found["moments"] == "10"
    assert found["time taken"] == "1.2"
    assert {"recordings started", "duplicates avoided", "failures", "expired", "dead letters"} <= found.keys()


# --- the command ----------------------------------------------------------------------------------


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "highlight", "demo", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _port_closed(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def _brokers_listening_on(bootstrap: str) -> list[int]:
    """Pids of any process (a tansu left behind) whose command line names this listener."""
    needle = f"tcp://{bootstrap}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _assert_broker_gone(bootstrap: str) -> None:
    assert _port_closed(bootstrap), f"the broker on {bootstrap} is still listening"
    assert _brokers_listening_on(bootstrap) == []


def test_demo_of_50_moments_reports_what_it_sent_and_stops_its_broker() -> None:
    started = time.monotonic()
    done = subprocess.run(
        _command("--moments", "50", "--json"), capture_output=True, timeout=90, env=_env(), check=False
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary = orjson.loads(done.stdout.decode().strip().splitlines()[-1])
    # The test's own count, from the same seeded shape the demo sent (times do not change the shape).
    burst = make_burst(50, 6, datetime.now(UTC), seed=7)
    live = [r for r in burst.records if r.kind == "live"]
    offline = sum(1 for r in live if r.channel_id == burst.offline_channel)
    online_channels = len({r.channel_id for r in live if r.channel_id != burst.offline_channel})
    assert summary["offline_channel"] == burst.offline_channel
    assert summary["moments"] == summary["answered"] == 50
    assert summary["dead_letters"] == 1
    assert summary["expired"] == 1
    assert summary["failed"] == offline
    assert summary["started"] == online_channels == 5
    assert summary["duplicates"] == 50 - 1 - 1 - offline - online_channels
    assert summary["in_doubt"] == 0
    assert summary["clips"] == online_channels, "each recording's clip arrived within the run"
    urls = summary["video_urls"]
    assert len(urls) == online_channels
    assert burst.offline_channel not in urls
    assert all(re.fullmatch(r"http://1234\.vod2\.myqcloud\.com/\d+/\d{19}/f0\.flv", url) for url in urls.values()), urls
    parts = ("started", "duplicates", "failed", "expired", "dead_letters")
    assert sum(summary[k] for k in parts) == 50
    assert summary["matches_expected"] is True
    assert elapsed < 30, f"the demo took {elapsed:.1f} s"
    _assert_broker_gone(summary["bootstrap"])


def test_demo_without_a_tty_prints_one_plain_line_per_answer() -> None:
    done = subprocess.run(
        _command("--moments", "12", "--channels", "3", "--seed", "5"),
        capture_output=True,
        timeout=90,
        env=_env(),
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert not ANSI.search(out), "no terminal codes when stdout is not a terminal"
    statuses = ("started", "duplicate", "failed", "expired", "dead-letter")
    lines = [line for line in out.splitlines() if line.split(" ", 1)[0] in statuses]
    assert len(lines) == 12, out
    for line in lines:
        status, channel, *_ = line.split()
        assert re.fullmatch(r"chan-0[1-3]", channel), line
        if status in ("started", "duplicate"):
            assert re.search(r" task \d{1,20} ", line), line
        if status in ("started", "duplicate", "failed"):
            assert WINDOW.search(line), line
        if status == "failed":
            assert "ret 1301" in line, line
    assert Counter(line.split()[0] for line in lines)["dead-letter"] == 1
    clip_lines = [line for line in out.splitlines() if line.startswith("clip ")]
    assert len(clip_lines) == 2, out
    assert all(re.search(r" http://\S+/f0\.flv$", line) and WINDOW.search(line) for line in clip_lines), clip_lines
    summary = dict(SUMMARY_LINE.findall(out))
    assert summary["moments"] == "12"
    assert summary["recordings started"] == "2"
    assert summary["clips"] == "2"
    assert summary["dead letters"] == "1"


class _Output:
    """Everything a child writes to a pipe or a pty, read on a thread so the child never blocks on it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # a pty's reader gets EIO once the child has gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout} s in:\n{self.text()}")

    def join(self) -> None:
        self._thread.join(timeout=5)


@pytest.mark.parametrize(
    ("signum", "after"),
    [(signal.SIGINT, r"simulator: http://\S+"), (signal.SIGTERM, r"still running")],
    ids=["sigint-during-start-up", "sigterm-while-kept-running"],
)
def test_keep_running_prints_addresses_and_a_signal_stops_everything_with_exit_0(
    signum: signal.Signals, after: str
) -> None:
    with subprocess.Popen(
        _command("--keep-running", "--moments", "10", "--channels", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=_env(),
    ) as process:
        assert process.stdout is not None
        output = _Output(process.stdout.fileno())
        try:
            bootstrap = output.wait_for(r"bootstrap: (127\.0\.0\.1:\d+)", 30)[1]
            output.wait_for(after, 30)
            assert not _port_closed(bootstrap)
            process.send_signal(signum)
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
        output.join()
    assert code == 0, output.text()
    _assert_broker_gone(bootstrap)


def test_demo_on_a_terminal_draws_a_live_table() -> None:
    pytest.importorskip("rich")
    parent, child = os.openpty()
    try:
        with subprocess.Popen(
            _command("--moments", "12", "--channels", "3"),
            stdout=child,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**_env(), "COLUMNS": "100", "LINES": "40"},
        ) as process:
            os.close(child)
            child = -1
            output = _Output(parent)
            try:
                code = process.wait(timeout=90)
            finally:
                if process.poll() is None:
                    process.kill()  # leaving the `with` waits for it
            output.join()
    finally:
        for fd in (parent, child):
            if fd >= 0:
                os.close(fd)
    raw = output.text()
    assert code == 0, raw
    assert ANSI.search(raw), "a terminal gets a redrawn table"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert "window (CST)" in text
    assert "clip (video URL)" in text
    assert re.search(r"http://1234\.vod2\.myq", text), "a recording's video URL in its row"
    assert re.search(r"chan-0[1-3] +started +\d{1,20} +\d\d:\d\d:\d\d-\d\d:\d\d:\d\d", text)
    assert dict(SUMMARY_LINE.findall(text.replace("\r", "")))["moments"] == "12"
