"""What happens to one record of the callbacks topic: a recording file becomes a clip event, once.

It runs in its channel's lane (`ch:<channel_id>`, as the channel's moments do), so a recording's state entry is
never read and rewritten by two jobs at once. Exactly one clip per file: the clip is published (acknowledged),
then the recording's entry is rewritten with the file's id (acknowledged). A crash between the two publishes
that clip again, identically; a notification Live re-sends later finds the file id and publishes nothing.

Like a moment's, a record's work runs under the last resort (`highlight.last_resort`): a record that fails in
our own code on every retry is dead-lettered (`unprocessable`) instead of stopping its partition for good.

Business logic only; Kafka is reached through the adapters, whose errors are already ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import structlog

from highlight.callbacks.notification import (
    InvalidNotification,
    RecordingFile,
    parse_recording_file,
    read_document,
)
from highlight.clips import candidate_buckets, clip_document, encode_clip, match, seconds_after_window
from highlight.config import Settings
from highlight.kafka import Producer, Record, home_partition
from highlight.last_resort import LastResort
from highlight.lease import Lease
from highlight.metrics import Metrics
from highlight.recorder import Routed
from highlight.state import StateStore

log = structlog.get_logger("highlight.clipper")


class Clipper:
    def __init__(
        self,
        settings: Settings,
        *,
        partitions: int,
        producer: Producer,
        state: StateStore,
        lease: Lease,
        metrics: Metrics,
        clock: Callable[[], datetime],
        dead_letter_bytes: int | None = None,
    ) -> None:
        self._topic = settings.kafka.clips_topic
        self._lease = lease
        self._bucket_seconds = settings.recorder.bucket_seconds
        self._max_age = settings.recorder.max_event_age_seconds
        self._partitions = partitions
        self._producer = producer
        self._state = state
        self._metrics = metrics
        self._clock = clock
        self._last_resort = LastResort(settings, producer, metrics, lease, dead_letter_bytes=dead_letter_bytes)

    def route(self, record: Record) -> Routed:
        """Read the notification now (cheap, and it decides the lane); match and publish in the lane."""
        unordered = f"\0{record.topic}:{record.partition}:{record.offset}"
        guarded = self._last_resort.guarded
        try:
            file = parse_recording_file(read_document(record.value))
            home = home_partition(file.channel_id, self._partitions)
        except InvalidNotification as invalid:
            reason = "other_event" if invalid.reason == "not_a_file" else "unreadable"
            message = str(invalid)
            return Routed(unordered, lambda: guarded(record, lambda: self._ignore(record, reason, message)))
        except Exception as exc:
            crash = exc  # a bug in reading this record: the last resort deals with it in its lane
            return Routed(unordered, lambda: guarded(record, lambda: _raise(crash)))
        if record.partition != home:
            # Only the receiver writes this topic, always to the home partition: someone else wrote this one,
            # and this instance may not hold that channel's recordings.
            message = f"on partition {record.partition}, but {file.channel_id!r} lives on {home}"
            return Routed(unordered, lambda: guarded(record, lambda: self._ignore(record, "misplaced", message)))
        return Routed(f"ch:{file.channel_id}", lambda: guarded(record, lambda: self._clip(record, file, home)))

    async def _ignore(self, record: Record, reason: str, message: str) -> None:
        self._metrics.callbacks_ignored.labels(reason).inc()
        level = log.debug if reason == "other_event" else log.warning
        level(
            "callback_ignored",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            error=message,
        )

    async def _clip(self, record: Record, file: RecordingFile, index: int) -> None:
        started = time.perf_counter()
        flog = log.bind(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            channel_id=file.channel_id,
            file_id=file.file_id,
            file_task_id=file.task_id,
        )
        buckets = candidate_buckets(file, self._bucket_seconds, self._max_age)
        found = match(file, self._state.recordings(index, file.channel_id, buckets))
        if found is None:
            self._metrics.files_unmatched.inc()
            # Normal for template recordings and other systems' tasks; a file of ours points at a gone window.
            flog.info(
                "clip_unmatched",
                file_start=file.start_time,
                file_end=file.end_time,
                template=file.template,
                latency_ms=_since(started),
            )
            return
        entry = found.entry
        if file.file_id in entry.clipped_files:
            self._metrics.file_repeats.inc()
            flog.info("clip_repeat", bucket=found.key[1], started_by=entry.event_id, latency_ms=_since(started))
            return
        document = clip_document(found, file, self._bucket_seconds)
        # Only while this member proves it owns the channel (`highlight.lease`); fenced, the record is left
        # uncommitted for the owner, who publishes the same clip.
        await self._lease.writable()
        await self._producer.send(self._topic, encode_clip(document), key=found.key[0].encode())
        await self._lease.writable()
        await self._state.put(index, found.key, replace(entry, clipped_files=(*entry.clipped_files, file.file_id)))
        delay = seconds_after_window(entry, self._clock().timestamp())
        self._metrics.clips.labels(found.matched_by).inc()
        self._metrics.clip_delay_seconds.observe(delay)
        # The one canonical line per clip.
        flog.info(
            "clip_published",
            bucket=found.key[1],
            matched_by=found.matched_by,
            recording_status=document["recording_status"],
            task_id=document.get("task_id"),
            started_by=entry.event_id,
            video_url=file.video_url,
            seconds_after_window=round(delay, 1),
            latency_ms=_since(started),
        )


async def _raise(exc: Exception) -> None:
    raise exc


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
