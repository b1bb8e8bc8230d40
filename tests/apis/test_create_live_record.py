"""The Cloud API 3.0 CreateLiveRecord backend, pure: TC3 signing against Tencent's own SDK, the body, the reply.

The oracle is `tencentcloud-sdk-python-common`'s `AbstractClient`: its `_build_req_with_tc3_signature` (the
whole header set for a request it builds itself) and `_get_tc3_signature` (the signature of a request we give
it), which is the code every Tencent Python SDK call signs with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from highlight.apis import HttpRequest, Started, create_live_record
from highlight.apis.create_live_record import CreateLiveRecord, authorization, situation_of
from highlight.apis.policy import Situation
from highlight.config import Secret
from highlight.errors import (
    LiveAccessRefused,
    LiveError,
    LiveInDoubt,
    LiveLimitReached,
    LiveRefused,
    LiveUnreachable,
)
from highlight.recording import RecordingOptions, RecordingWindow

URL = "https://live.tencentcloudapi.com/"
SECRET_ID = "AKIDexample"  # noqa: S105 - a test value, not a credential
SECRET_KEY = "example-secret-key"  # noqa: S105 - a test value, not a credential
NOW = datetime(2030, 6, 1, 23, 59, 59, tzinfo=UTC)
WINDOW = RecordingWindow("2030-06-02 07:59:59", "2030-06-02 08:04:59")
CHANNELS = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


class LiveOracle(AbstractClient):  # type: ignore[misc]  # the SDK ships no type information
    _apiVersion = "2018-08-01"
    _endpoint = "live.tencentcloudapi.com"
    _service = "live"


def oracle(host: str, region: str | None = None, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> Any:
    profile = ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=HttpProfile(endpoint=host))
    return LiveOracle(credential.Credential(secret_id, secret_key), region, profile)


def sdk_signed(host: str, params: dict[str, object], timestamp: int) -> RequestInternal:
    """The request the SDK itself builds and signs for `params` at `timestamp`."""
    request = RequestInternal(host, "POST", "/")
    with mock.patch.object(abstract_client.time, "time", return_value=timestamp):
        oracle(host)._build_req_with_tc3_signature("CreateLiveRecord", params, request)
    return request


def sdk_authorization_of(request: HttpRequest, path: str = "/", secret_key: str = SECRET_KEY) -> str:
    """What the SDK's signing code makes of the exact request we send (our headers, our body bytes)."""
    assert request.body is not None
    timestamp = int(request.headers["X-TC-Timestamp"])
    internal = RequestInternal(request.headers["Host"], "POST", path, dict(request.headers), request.body.decode())
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    signature = oracle(request.headers["Host"])._get_tc3_signature(None, internal, date, "live", secret_key)
    return (
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/live/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def backend(**kwargs: object) -> CreateLiveRecord:
    settings_: dict[str, object] = {
        "url": URL,
        "secret_id": SECRET_ID,
        "secret_key": Secret(SECRET_KEY),
        "app_name": "live",
        "domain_name": "push.example.com",
        **kwargs,
    }
    return CreateLiveRecord(**settings_)  # type: ignore[arg-type]  # the test's own kwargs


# --- TC3 against the SDK ------------------------------------------------------------------------------------------


@settings(max_examples=50)
@given(channel=CHANNELS, timestamp=st.integers(0, 2**32), host=st.sampled_from(["live.tencentcloudapi.com", "h:8443"]))
def test_authorization_equals_the_sdks_for_the_request_the_sdk_builds(channel: str, timestamp: int, host: str) -> None:
    params: dict[str, object] = {"StreamName": channel, "AppName": "live", "Highlight": 1}
    sdk = sdk_signed(host, params, timestamp)

    ours = authorization(
        SECRET_ID,
        SECRET_KEY,
        timestamp=timestamp,
        host=host,
        body=sdk.data.encode(),
        content_type=sdk.header["Content-Type"],
    )
    assert ours == sdk.header["Authorization"]


@settings(max_examples=50)
@given(channel=CHANNELS, seconds=st.integers(0, 2**32))
def test_backend_authorization_equals_the_sdks_signature_of_the_same_request(channel: str, seconds: int) -> None:
    now = datetime.fromtimestamp(seconds, UTC)
    request = backend().request(RecordingOptions(channel, 300, file_format="mp4", mix_stream=1), WINDOW, now)
    assert request.headers["Authorization"] == sdk_authorization_of(request)


def test_backend_signs_the_urls_port_and_path_as_the_sdk_would() -> None:
    request = backend(url="http://127.0.0.1:8443/api/").request(RecordingOptions("c", 300), WINDOW, NOW)
    assert request.headers["Host"] == "127.0.0.1:8443"
    assert request.url == "http://127.0.0.1:8443/api/"
    assert request.headers["Authorization"] == sdk_authorization_of(request, path="/api/")


def test_the_credential_scope_date_is_the_utc_day_of_the_timestamp() -> None:
    # 23:59:59 UTC is already the next day in China: the scope must still say the UTC day.
    request = backend().request(RecordingOptions("c", 300), WINDOW, NOW)
    assert f"Credential={SECRET_ID}/2030-06-01/live/tc3_request" in request.headers["Authorization"]


def test_a_different_key_or_body_changes_the_signature() -> None:
    first = backend().request(RecordingOptions("c", 300), WINDOW, NOW)
    other_key = backend(secret_key=Secret("other")).request(RecordingOptions("c", 300), WINDOW, NOW)
    other_body = backend().request(RecordingOptions("d", 300), WINDOW, NOW)
    assert len({r.headers["Authorization"] for r in (first, other_key, other_body)}) == 3


# --- the request -------------------------------------------------------------------------------------------------


def test_request_headers_are_the_documented_ones() -> None:
    request = backend(region="ap-guangzhou").request(RecordingOptions("c", 300), WINDOW, NOW)

    assert request.method == "POST"
    assert request.url == URL
    assert {name: value for name, value in request.headers.items() if name != "Authorization"} == {
        "Content-Type": "application/json; charset=utf-8",
        "Host": "live.tencentcloudapi.com",
        "X-TC-Action": "CreateLiveRecord",
        "X-TC-Version": "2018-08-01",
        "X-TC-Timestamp": str(int(NOW.timestamp())),
        "X-TC-Region": "ap-guangzhou",
    }


def test_region_header_is_left_out_when_no_region_is_configured() -> None:
    request = backend().request(RecordingOptions("c", 300), WINDOW, NOW)
    assert "X-TC-Region" not in request.headers


def test_body_asks_for_real_time_recording_of_the_window_with_the_default_domain() -> None:
    request = backend().request(RecordingOptions("直播 a&b=c", 300), WINDOW, NOW)
    assert request.body is not None
    assert orjson.loads(request.body) == {
        "StreamName": "直播 a&b=c",
        "AppName": "live",
        "DomainName": "push.example.com",
        "StartTime": WINDOW.start_time,
        "EndTime": WINDOW.end_time,
        "Highlight": 1,
    }


def test_body_carries_the_moments_options_and_ignores_its_path() -> None:
    moment = RecordingOptions(
        "c", 300, file_format="hls", record_type="audio", domain="other.example", path="a/b", mix_stream=0
    )
    request = backend().request(moment, WINDOW, NOW)
    assert request.body is not None
    body = orjson.loads(request.body)
    assert body["DomainName"] == "other.example"
    assert (body["FileFormat"], body["RecordType"], body["MixStream"]) == ("hls", "audio", 0)
    assert "path" not in json.dumps(body).lower()


def test_domain_is_left_out_when_neither_moment_nor_settings_give_one() -> None:
    request = backend(domain_name=None).request(RecordingOptions("c", 300), WINDOW, NOW)
    assert request.body is not None
    assert "DomainName" not in orjson.loads(request.body)


# --- the reply ---------------------------------------------------------------------------------------------------

REQUEST_ID = "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"


def error_body(code: str, message: str = "the message") -> bytes:
    return orjson.dumps({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": REQUEST_ID}})


def parse(status: int, body: bytes) -> Started:
    return create_live_record.parse_reply(status, body)


@pytest.mark.parametrize("task_id", ["1", "18446744073709551615", '"18446744073709551615"'])
def test_a_task_id_is_started_with_the_request_id(task_id: str) -> None:
    body = f'{{"Response":{{"TaskId":{task_id},"RequestId":"{REQUEST_ID}"}}}}'.encode()
    assert parse(200, body) == Started(int(task_id.strip('"')), REQUEST_ID)


@pytest.mark.parametrize(
    ("code", "error", "retriable"),
    [
        ("AuthFailure.SignatureFailure", LiveAccessRefused, False),
        ("AuthFailure.SignatureExpire", LiveAccessRefused, False),
        ("AuthFailure.SecretIdNotFound", LiveAccessRefused, False),
        ("AuthFailure.InvalidSecretId", LiveAccessRefused, False),
        ("AuthFailure.UnauthorizedOperation", LiveAccessRefused, False),
        ("AuthFailure.TokenFailure", LiveAccessRefused, False),
        ("AuthFailure", LiveAccessRefused, False),
        ("UnauthorizedOperation", LiveAccessRefused, False),
        ("UnauthorizedOperation.NotAllowed", LiveAccessRefused, False),
        ("IpInBlacklist", LiveAccessRefused, False),
        ("IpNotInWhitelist", LiveAccessRefused, False),
        ("InvalidAction", LiveAccessRefused, False),
        ("NoSuchVersion", LiveAccessRefused, False),
        ("UnsupportedRegion", LiveAccessRefused, False),
        ("ActionOffline", LiveAccessRefused, False),
        ("ResourceNotFound.StopService", LiveAccessRefused, False),
        ("ResourceUnavailable.InvalidVodStatus", LiveAccessRefused, False),
        ("RequestLimitExceeded", LiveRefused, True),
        ("RequestLimitExceeded.UinLimitExceeded", LiveRefused, True),
        ("RequestLimitExceeded.IPLimitExceeded", LiveRefused, True),
        ("RequestSizeLimitExceeded", LiveRefused, False),
        ("ServiceUnavailable", LiveUnreachable, True),
        ("InternalError", LiveInDoubt, False),
        ("InternalError.SystemError", LiveInDoubt, False),
        ("InternalError.HasNotLivingStream", LiveRefused, False),
        ("ResourceUnavailable.StreamNotExist", LiveRefused, False),
        ("LimitExceeded.MaximumRunningTask", LiveLimitReached, False),
        ("LimitExceeded.MaximumTask", LiveLimitReached, False),
        ("LimitExceeded.SomethingElse", LiveLimitReached, False),
        ("InvalidParameter", LiveRefused, False),
        ("InvalidParameter.InvalidTaskTime", LiveRefused, False),
        ("InvalidParameterValue", LiveRefused, False),
        ("MissingParameter", LiveRefused, False),
        ("UnknownParameter", LiveRefused, False),
        ("ResourceNotFound", LiveRefused, False),
        ("ResourceNotFound.ChannelNotExist", LiveRefused, False),
        ("FailedOperation", LiveRefused, False),
        ("FailedOperation.HasNotLivingStream", LiveRefused, False),
        ("UnsupportedOperation", LiveRefused, False),
        ("SomethingNew.Entirely", LiveRefused, False),
    ],
)
def test_each_error_code_is_classified_and_carries_code_and_request_id(
    code: str, error: type[LiveError], retriable: bool
) -> None:
    with pytest.raises(error) as raised:
        parse(200, error_body(code))
    assert type(raised.value) is error
    assert raised.value.code == code
    assert raised.value.retriable is retriable
    assert raised.value.request_id == REQUEST_ID
    assert "the message" in str(raised.value)


def test_prefix_patterns_match_whole_words_only() -> None:
    assert situation_of("AuthFailureX") is Situation.REFUSED
    assert situation_of("InternalErrorX") is Situation.REFUSED
    assert situation_of("InternalError.X") is Situation.INTERNAL_ERROR


@pytest.mark.parametrize(
    "body",
    [
        b'{"Response":{"RequestId":"r"}}',
        b'{"Response":{"TaskId":-1,"RequestId":"r"}}',
        b'{"Response":{"TaskId":18446744073709551616,"RequestId":"r"}}',
        b'{"Response":{"TaskId":true,"RequestId":"r"}}',
        b'{"Response":{"TaskId":1.0,"RequestId":"r"}}',
        b'{"Response":{"Error":{"Code":7},"RequestId":"r"}}',
        b'{"Response":{"Error":"boom","TaskId":1,"RequestId":"r"}}',
    ],
    ids=["no-task", "negative", "too-big", "bool", "float", "numeric-code", "error-not-object"],
)
def test_success_without_a_valid_task_id_is_in_doubt_with_the_request_id(body: bytes) -> None:
    with pytest.raises(LiveInDoubt) as raised:
        parse(200, body)
    assert raised.value.code == "invalid_reply"
    assert raised.value.request_id == "r"


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b"[1]", b'{"TaskId":1}', b'{"Response":[]}'])
def test_an_unreadable_200_is_in_doubt_without_a_request_id(body: bytes) -> None:
    with pytest.raises(LiveInDoubt) as raised:
        parse(200, body)
    assert raised.value.request_id is None


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_gateway_failures_are_unreachable_and_keep_a_request_id(status: int) -> None:
    with pytest.raises(LiveUnreachable) as raised:
        parse(status, error_body("InternalError"))
    assert raised.value.code == f"http_{status}"
    assert raised.value.request_id == REQUEST_ID
    with pytest.raises(LiveUnreachable):
        parse(status, b"<html>bad gateway</html>")


@pytest.mark.parametrize("status", [302, 400, 404])
def test_non_2xx_without_an_api_error_is_a_wrong_endpoint(status: int) -> None:
    with pytest.raises(LiveAccessRefused) as raised:
        parse(status, b"<html>Not Found</html>")
    assert raised.value.code == f"http_{status}"


def test_an_api_error_behind_a_4xx_is_classified_by_its_code() -> None:
    with pytest.raises(LiveRefused) as raised:
        parse(400, error_body("RequestLimitExceeded"))
    assert raised.value.retriable
    assert raised.value.request_id == REQUEST_ID


# --- the read-only probe (highlight check) ------------------------------------------------------------------------


def test_the_probe_lists_streams_signed_exactly_as_the_sdk_would() -> None:
    request = backend(region="ap-guangzhou").probe(NOW)
    assert request.method == "POST"
    assert request.url == URL
    assert request.body == b"{}", "no filter: the account's streams, first page"
    assert request.headers["X-TC-Action"] == "DescribeLiveStreamOnlineList"
    assert request.headers["X-TC-Version"] == "2018-08-01"
    assert request.headers["X-TC-Timestamp"] == str(int(NOW.timestamp()))
    assert request.headers["X-TC-Region"] == "ap-guangzhou"
    assert request.headers["Authorization"] == sdk_authorization_of(request)


def _answer(response: dict[str, object]) -> bytes:
    return orjson.dumps({"Response": {"RequestId": "req-1", **response}})


def test_a_probe_answer_with_a_stream_count_is_accepted() -> None:
    said = backend().parse_probe(200, _answer({"TotalNum": 1, "OnlineInfo": []}))
    assert said == "DescribeLiveStreamOnlineList answered (1 stream live, request req-1)"


@pytest.mark.parametrize(
    "code", ["AuthFailure.SignatureFailure", "AuthFailure.SecretIdNotFound", "AuthFailure.SignatureExpire"]
)
def test_a_probe_refused_for_our_credentials_is_access_refused_with_its_request_id(code: str) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        backend().parse_probe(200, _answer({"Error": {"Code": code, "Message": "no"}}))
    assert caught.value.code == code
    assert caught.value.request_id == "req-1"


def test_a_key_cam_forbids_to_list_streams_is_still_a_key_the_gateway_accepted() -> None:
    said = backend().parse_probe(200, _answer({"Error": {"Code": "UnauthorizedOperation", "Message": "CAM"}}))
    assert "the signature is accepted" in said
    assert "CreateLiveRecord cannot be told" in said


def test_a_probe_refused_by_the_action_proves_the_credentials() -> None:
    said = backend().parse_probe(200, _answer({"Error": {"Code": "InvalidParameterValue", "Message": "PageSize"}}))
    assert said.startswith("DescribeLiveStreamOnlineList answered InvalidParameterValue (PageSize, request req-1)")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, _answer({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}), LiveRefused),
        (200, _answer({"Error": {"Code": "InternalError", "Message": "oops"}}), LiveInDoubt),
        (200, _answer({"Error": {"Code": "InvalidAction", "Message": "wrong endpoint"}}), LiveAccessRefused),
        (503, b"", LiveUnreachable),
        (404, b"<html/>", LiveAccessRefused),
        (200, b"<html/>", LiveAccessRefused),
    ],
)
def test_a_probe_answer_that_proves_nothing_is_a_live_error(status: int, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        backend().parse_probe(status, body)
    assert "task may exist" not in str(caught.value), "a read-only call creates no task"


@given(st.integers(100, 599), st.binary(max_size=100) | st.dictionaries(st.text(max_size=10), st.none()).map(_answer))
def test_parse_probe_returns_what_was_said_or_raises_a_live_error(status: int, body: bytes) -> None:
    try:
        said = backend().parse_probe(status, body)
    except LiveError:
        return
    assert said.startswith("DescribeLiveStreamOnlineList answered")
