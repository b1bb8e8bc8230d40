"""What highlight publishes (highlight.results): result documents and dead-letter headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight import schemas
from highlight.dedup import IN_DOUBT_MESSAGE, Entry, Phase
from highlight.moment import Moment
from highlight.results import REQUIRED_FIELDS, STATUSES, dropping, encode_result, result_document

PROCESSED = datetime(2024, 5, 1, 12, 15, 3, 123456, tzinfo=UTC)
OCCURRED_TEXT = "2024-05-01T20:15:00+08:00"
BUCKET = 1714565700 // 300
START, END = "2024-05-01 20:15:04", "2024-05-01 20:20:04"
MAX_TASK_ID = str(2**64 - 1)


def _validate(document: dict[str, Any]) -> None:
    schemas.validator(schemas.RESULT_SCHEMA)(document)


def _moment(event_id: str = "e-1", attributes: dict[str, Any] | None = None) -> Moment:
    return Moment(
        event_id=event_id,
        channel_id="8888_test123",
        occurred_at=datetime.fromisoformat(OCCURRED_TEXT),
        occurred_at_text=OCCURRED_TEXT,
        attributes=attributes,
    )


STARTED = Entry(Phase.STARTED, "e-1", START, END, task_id=MAX_TASK_ID, attempts=2)
FAILED = Entry(Phase.FAILED, "e-1", START, END, error_code="1301", error_message="has not live stream", attempts=1)
IN_DOUBT = Entry(Phase.IN_DOUBT, "e-1", START, END, error_code="read_timeout", error_message="no answer", attempts=1)
INTENT = Entry(Phase.INTENT, "e-1", START, END, attempts=1)


def _document(status: str, entry: Entry | None, event_id: str = "e-1", **kwargs: Any) -> dict[str, Any]:
    document = result_document(_moment(event_id, **kwargs), BUCKET, 300, status, entry, PROCESSED)
    _validate(document)
    return document


# --- documents, status by status ------------------------------------------------------------------


def test_started_document_carries_the_recording() -> None:
    assert _document("started", STARTED) == {
        "event_id": "e-1",
        "channel_id": "8888_test123",
        "bucket": BUCKET,
        "bucket_seconds": 300,
        "status": "started",
        "occurred_at": OCCURRED_TEXT,
        "processed_at": "2024-05-01T12:15:03.123Z",
        "task_id": "18446744073709551615",
        "start_time": START,
        "end_time": END,
        "attempts": 2,
        "api": "live_tape_start",
    }


def test_result_names_the_backend_and_request_id_of_the_call_that_made_the_entry() -> None:
    entry = Entry(
        Phase.STARTED, "e-1", START, END, task_id="7", attempts=1, api="create_live_record", request_id="req-1"
    )
    started = _document("started", entry)
    duplicate = _document("duplicate", entry, event_id="e-2")
    assert (started["api"], started["request_id"]) == ("create_live_record", "req-1")
    assert (duplicate["api"], duplicate["request_id"]) == ("create_live_record", "req-1")


def test_entry_from_before_backends_existed_is_answered_as_live_tape_start() -> None:
    assert _document("duplicate", STARTED, event_id="e-2")["api"] == "live_tape_start"


def test_expired_result_names_no_backend_since_no_call_was_made() -> None:
    assert "api" not in _document("expired", None)


@pytest.mark.parametrize("task_id", [0, 1, 2**53 + 1, 2**64 - 1])
def test_task_id_is_a_decimal_string(task_id: int) -> None:
    entry = Entry(Phase.STARTED, "e-1", START, END, task_id=str(task_id), attempts=1)
    document = _document("started", entry)
    assert document["task_id"] == str(task_id)
    assert orjson.loads(encode_result(document))["task_id"] == str(task_id)


def test_duplicate_document_names_the_event_that_started_the_recording() -> None:
    document = _document("duplicate", STARTED, event_id="e-2")
    assert document["status"] == "duplicate"
    assert document["event_id"] == "e-2"
    assert document["started_by"] == "e-1"
    assert document["task_id"] == MAX_TASK_ID
    assert (document["start_time"], document["end_time"]) == (START, END)
    assert "attempts" not in document  # this moment made no call
    assert "error" not in document


def test_failed_document_carries_the_error() -> None:
    document = _document("failed", FAILED)
    assert document["error"] == {"code": "1301", "message": "has not live stream"}
    assert (document["start_time"], document["end_time"]) == (START, END)
    assert document["attempts"] == 1
    assert "task_id" not in document
    assert "started_by" not in document


def test_failed_document_without_error_details_still_has_an_error() -> None:
    document = _document("failed", Entry(Phase.FAILED, "e-1", START, END, attempts=3))
    assert document["error"] == {"code": "failed", "message": ""}


def test_a_moment_the_budget_had_no_room_for_is_skipped_with_its_reason_and_names_no_call() -> None:
    document = _document("skipped", Entry(Phase.SKIPPED, "e-1", reason="running_limit"))
    _validate(document)
    assert document["reason"] == "running_limit"
    for field in ("api", "start_time", "task_id", "error", "attempts"):
        assert field not in document, field


def test_a_moment_the_api_refused_for_a_limit_is_skipped_with_the_apis_answer() -> None:
    refused = Entry(
        Phase.SKIPPED,
        "e-1",
        START,
        END,
        error_code="LimitExceeded.MaximumTask",
        error_message="exceeds the daily limit",
        attempts=1,
        api="create_live_record",
        request_id="req-1",
        reason="daily_limit",
    )
    document = _document("skipped", refused)
    _validate(document)
    assert document["reason"] == "daily_limit"
    assert document["error"] == {"code": "LimitExceeded.MaximumTask", "message": "exceeds the daily limit"}
    assert (document["api"], document["request_id"], document["attempts"]) == ("create_live_record", "req-1", 1)
    assert "task_id" not in document


def test_the_schema_requires_a_reason_exactly_for_skipped() -> None:
    skipped = _document("skipped", Entry(Phase.SKIPPED, "e-1", reason="daily_limit"))
    with pytest.raises(schemas.ValidationError):
        _validate({k: v for k, v in skipped.items() if k != "reason"})
    with pytest.raises(schemas.ValidationError):
        _validate(_document("failed", FAILED) | {"reason": "running_limit"})


def test_in_doubt_document_carries_the_error() -> None:
    document = _document("in_doubt", IN_DOUBT)
    assert document["error"] == {"code": "read_timeout", "message": "no answer"}
    assert "task_id" not in document


def test_in_doubt_from_a_cut_off_intent_explains_itself() -> None:
    document = _document("in_doubt", INTENT)
    assert document["error"] == {"code": "in_doubt", "message": IN_DOUBT_MESSAGE}


def test_in_doubt_for_another_event_of_the_key_has_no_attempts() -> None:
    document = _document("in_doubt", IN_DOUBT, event_id="e-2")
    assert "attempts" not in document
    assert document["error"]["code"] == "read_timeout"


@pytest.mark.parametrize("entry", [None, STARTED, FAILED])
def test_expired_document_has_no_task_id_nor_times(entry: Entry | None) -> None:
    document = _document("expired", entry)
    assert document["status"] == "expired"
    for absent in ("task_id", "start_time", "end_time", "error", "started_by", "attempts"):
        assert absent not in document


@pytest.mark.parametrize("attributes", [{"team": "red"}, {}, {"deep": {"list": [1, None, "x"]}, "ü": "🎥"}])
@pytest.mark.parametrize(("status", "entry"), [("started", STARTED), ("expired", None), ("failed", FAILED)])
def test_attributes_are_passed_through(attributes: dict[str, Any], status: str, entry: Entry | None) -> None:
    assert _document(status, entry, attributes=attributes)["attributes"] == attributes


def test_no_attributes_key_without_attributes() -> None:
    assert "attributes" not in _document("started", STARTED)


@pytest.mark.parametrize(
    "processed_at",
    [
        datetime(2024, 5, 1, 20, 15, 3, 123999, tzinfo=timezone(timedelta(hours=8))),
        datetime(2024, 5, 1, 2, 15, 3, 123000, tzinfo=timezone(timedelta(hours=-10))),
    ],
)
def test_processed_at_is_utc_with_milliseconds_and_z(processed_at: datetime) -> None:
    document = result_document(_moment(), BUCKET, 300, "expired", None, processed_at)
    assert document["processed_at"] == "2024-05-01T12:15:03.123Z"


_EDGES = [
    datetime(2024, 5, 1, 12, 15, 3, 122999, tzinfo=UTC),
    datetime(2024, 5, 1, 12, 15, 3, 123000, tzinfo=UTC),
    datetime(2024, 5, 1, 20, 15, 3, 123500, tzinfo=timezone(timedelta(hours=8))),
    datetime(2024, 5, 1, 12, 15, 3, 124000, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 0, 0, tzinfo=UTC),
]
_instants = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 -- zones given below
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC) | st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes))),
)
# Runs of instants a few hundred microseconds apart, as a batch of answers stamps them, around millisecond edges.
_runs = st.tuples(_instants, st.lists(st.integers(-1500, 1500), min_size=1, max_size=12)).map(
    lambda run: [run[0] + timedelta(microseconds=step) for step in run[1]]
)


@given(st.lists(_runs | st.lists(st.sampled_from(_EDGES), min_size=1), min_size=1, max_size=4))
def test_processed_at_is_each_instants_own_millisecond_in_any_order(runs: list[list[datetime]]) -> None:
    for run in runs:
        for instant in run:
            document = result_document(_moment(), BUCKET, 300, "expired", None, instant)
            expected = instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            assert document["processed_at"] == expected


def test_encode_result_is_json_of_the_document() -> None:
    document = _document("duplicate", STARTED, event_id="e-2", attributes={"ü": 1})
    assert orjson.loads(encode_result(document)) == document


def test_statuses_are_exactly_the_schema_enum() -> None:
    assert set(STATUSES) == set(schemas.load(schemas.RESULT_SCHEMA)["properties"]["status"]["enum"])


def test_the_schema_rejects_a_started_result_without_a_task_id() -> None:
    document = _document("started", STARTED)
    del document["task_id"]
    with pytest.raises(schemas.ValidationError):
        _validate(document)


no_surrogates = st.characters(blacklist_categories=("Cs",))
ids = st.text(no_surrogates, min_size=1, max_size=30)
cst_times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 -- hypothesis bounds are naive
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(no_surrogates, max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def status_and_entry(draw: st.DrawFn) -> tuple[str, Entry | None]:
    status = draw(st.sampled_from(STATUSES))
    phase = {
        "started": st.just(Phase.STARTED),
        "duplicate": st.just(Phase.STARTED),
        "failed": st.just(Phase.FAILED),
        "in_doubt": st.sampled_from([Phase.IN_DOUBT, Phase.INTENT]),
        "expired": st.sampled_from(Phase),
        "skipped": st.just(Phase.SKIPPED),
    }[status]
    entry = Entry(
        draw(phase),
        draw(ids),
        draw(cst_times),
        draw(cst_times),
        task_id=str(draw(st.integers(0, 2**64 - 1))) if status in ("started", "duplicate") else None,
        error_code=draw(st.none() | ids),
        error_message=draw(st.none() | st.text(no_surrogates, max_size=30)),
        attempts=draw(st.integers(0, 10)),
        reason=draw(st.sampled_from(["running_limit", "daily_limit"])) if status == "skipped" else None,
    )
    if status == "expired" and draw(st.booleans()):
        return status, None
    return status, entry


@given(
    status_and_entry(),
    ids,
    ids,
    st.integers(-(2**40), 2**40),
    st.none() | st.dictionaries(st.text(no_surrogates, max_size=5), json_values, max_size=4),
)
def test_every_status_document_validates_against_the_result_schema(
    status_entry: tuple[str, Entry | None],
    event_id: str,
    channel_id: str,
    bucket: int,
    attributes: dict[str, Any] | None,
) -> None:
    status, entry = status_entry
    moment = Moment(event_id, channel_id, PROCESSED, OCCURRED_TEXT, attributes=attributes)
    document = result_document(moment, bucket, 300, status, entry, PROCESSED)
    _validate(document)
    assert document["status"] == status
    assert document["event_id"] == event_id
    assert document["channel_id"] == channel_id
    assert document["bucket"] == bucket
    if attributes is not None:
        assert document["attributes"] == attributes
    if status in ("failed", "in_doubt"):
        assert set(document["error"]) == {"code", "message"}
    if status == "duplicate":
        assert entry is not None
        assert document["started_by"] == entry.event_id
    if status == "skipped":
        assert entry is not None
        assert document["reason"] == entry.reason
        assert ("api" in document) == (entry.attempts > 0), "a moment the budget skipped made no call"
    else:
        assert "reason" not in document


# --- the last resort: a result that cannot be encoded as it stands --------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


RECORDING = Entry(Phase.STARTED, "evt-1", "2024-05-01 20:15:00", "2024-05-01 20:20:00", task_id="16524440430269856708")


def test_a_result_whose_attributes_cannot_be_encoded_goes_without_them_and_says_so() -> None:
    # Past the parser's limit (64 levels), and past what orjson writes (254): built here, as a bug would.
    moment = Moment("evt-1", "chan", PROCESSED, OCCURRED_TEXT, attributes=_deep(300))
    document = result_document(moment, 1, 300, "started", RECORDING, PROCESSED)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(document)
    published = orjson.loads(encode_result(document))
    assert published["task_id"] == "16524440430269856708", "a started recording is never lost"
    assert published["dropped"] == ["attributes"]
    assert "attributes" not in published
    assert published | {"dropped": None} == {k: v for k, v in document.items() if k != "attributes"} | {"dropped": None}
    _validate(published)


def test_attributes_exactly_as_deep_as_orjson_writes_are_kept() -> None:
    # The document is one level, attributes the next: 253 levels inside them make 254 in all.
    moment = Moment("evt-1", "chan", PROCESSED, OCCURRED_TEXT, attributes=_deep(253))
    document = result_document(moment, 1, 300, "started", RECORDING, PROCESSED)
    assert orjson.loads(encode_result(document)) == document
    too_deep = Moment("e", "c", PROCESSED, OCCURRED_TEXT, attributes=_deep(254))
    deeper = result_document(too_deep, 1, 300, "expired", None, PROCESSED)
    assert orjson.loads(encode_result(deeper))["dropped"] == ["attributes"]


def test_a_required_field_that_cannot_be_encoded_raises_rather_than_publish_no_answer() -> None:
    moment = Moment("evt-\ud800", "chan", PROCESSED, OCCURRED_TEXT)
    with pytest.raises(orjson.JSONEncodeError):
        encode_result(result_document(moment, 1, 300, "expired", None, PROCESSED))


def test_dropping_names_what_was_left_out_and_keeps_everything_else() -> None:
    moment = Moment("evt-1", "chan", PROCESSED, OCCURRED_TEXT, attributes={"a": 1})
    document = result_document(moment, 1, 300, "started", RECORDING, PROCESSED)
    smaller = dropping(document, "attributes")
    assert smaller["dropped"] == ["attributes"]
    rest = {k: v for k, v in document.items() if k != "attributes"}
    assert {k: v for k, v in smaller.items() if k != "dropped"} == rest
    _validate(smaller)
    assert dropping(smaller, "attributes") == smaller, "dropping twice names it once"
    assert "dropped" not in dropping(rest, "attributes")


def test_required_fields_are_the_result_schemas() -> None:
    assert set(schemas.load(schemas.RESULT_SCHEMA)["required"]) == REQUIRED_FIELDS
