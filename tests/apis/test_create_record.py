"""The v2 CreateRecord backend, pure: the documented signature vector, the query, the reply's classification."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlight.apis import Started, create_record
from highlight.apis.create_record import CreateRecord, default_nonce, encode_query, sign_string, signature, signed_host
from highlight.config import Secret
from highlight.errors import LiveAccessRefused, LiveInDoubt, LiveLimitReached, LiveRefused, LiveUnreachable
from highlight.recording import RecordingOptions, RecordingWindow, window_at

URL = "https://live.api.qcloud.com/v2/index.php"
SECRET_ID = "AKIDexample"  # noqa: S105 - a test value, not a credential
SECRET_KEY = "example-secret-key"  # noqa: S105 - a test value, not a credential
NOW = datetime(2030, 6, 1, 4, 0, 0, tzinfo=UTC)
# Channel ids as a moment may carry them: anything JSON can hold but lone surrogates.
CHANNELS = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def backend(**kwargs: object) -> CreateRecord:
    settings: dict[str, object] = {
        "url": URL,
        "secret_id": SECRET_ID,
        "secret_key": Secret(SECRET_KEY),
        "region": "gz",
        **kwargs,
    }
    return CreateRecord(**settings)  # type: ignore[arg-type]  # the test's own kwargs, typed by CreateRecord


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def options(channel: str = "8888_test", **extra: object) -> RecordingOptions:
    return RecordingOptions(channel, 300, **extra)  # type: ignore[arg-type]  # the test's own kwargs


# --- signing --------------------------------------------------------------------------------------------------


def test_signature_reproduces_the_documented_hmac_sha1_vector() -> None:
    params = {
        "Action": "DescribeInstances",
        "Nonce": "345122",
        "Region": "gz",
        "SecretId": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA",
        "Timestamp": "1408704141",
    }
    text = sign_string("GET", "cvm.api.qcloud.com", "/v2/index.php", params)

    assert text == (
        "GETcvm.api.qcloud.com/v2/index.php?Action=DescribeInstances&Nonce=345122&Region=gz"
        "&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&Timestamp=1408704141"
    )
    assert signature("Gu5t9xGARNpq86cd98joQYCN3Cozk1qA", text) == "HgIYOPcx5lN6gz8JsCFBNAWp2oQ="
    assert signature("Gu5t9xGARNpq86cd98joQYCN3Cozk1qA", text, "HmacSHA1") == "HgIYOPcx5lN6gz8JsCFBNAWp2oQ="


def test_sign_string_sorts_by_name_leaves_values_raw_and_skips_the_signature() -> None:
    params = {"b": "x y+z", "a": "直播&=", "Signature": "ignored", "A": "1"}
    assert sign_string("GET", "h:8080", "/p", params) == "GETh:8080/p?A=1&a=直播&=&b=x y+z"


def test_signature_refuses_an_unknown_method() -> None:
    with pytest.raises(ValueError, match="SignatureMethod"):
        signature("k", "text", "HmacMD5")


def test_sha1_request_omits_signature_method_and_signs_the_raw_sorted_parameters() -> None:
    request = backend(nonce=lambda: 7).request(options(), window_at(NOW, 300), NOW)
    params = dict(query_of(request.url))

    assert "SignatureMethod" not in params
    expected = base64.b64encode(
        hmac.new(
            SECRET_KEY.encode(), sign_string("GET", "live.api.qcloud.com", "/v2/index.php", params).encode(), "sha1"
        ).digest()
    ).decode()
    assert params["Signature"] == expected


def test_hmac_sha256_request_names_its_method_and_round_trips() -> None:
    request = backend(signature_method="HmacSHA256").request(options(), window_at(NOW, 300), NOW)
    params = dict(query_of(request.url))

    assert params["SignatureMethod"] == "HmacSHA256"
    text = sign_string("GET", "live.api.qcloud.com", "/v2/index.php", params)
    digest = hmac.new(SECRET_KEY.encode(), text.encode(), hashlib.sha256).digest()
    assert params["Signature"] == base64.b64encode(digest).decode()
    assert len(base64.b64decode(params["Signature"])) == 32


def test_constructor_refuses_an_unknown_signature_method() -> None:
    with pytest.raises(ValueError, match="signature_method"):
        backend(signature_method="HmacSHA512")


# --- the request ---------------------------------------------------------------------------------------------


def test_request_carries_the_documented_parameters_and_ignores_unsupported_options() -> None:
    window = RecordingWindow("2030-06-01 12:00:00", "2030-06-01 12:05:00")
    request = backend(nonce=lambda: 345122).request(
        options(file_format="mp4", record_type="video", domain="d.example", path="a/b", mix_stream=1), window, NOW
    )
    params = dict(query_of(request.url))
    signature_value = params.pop("Signature")

    assert request.method == "GET"
    assert request.body is None
    assert request.url.startswith(URL + "?")
    assert request.headers == {"Host": "live.api.qcloud.com"}
    assert params == {
        "Action": "CreateRecord",
        "channelId": "8888_test",
        "startTime": "2030-06-01 12:00:00",
        "endTime": "2030-06-01 12:05:00",
        "tapeType": "1",
        "Region": "gz",
        "Timestamp": str(int(NOW.timestamp())),
        "Nonce": "345122",
        "SecretId": SECRET_ID,
    }
    assert signature_value


def test_query_names_are_sorted_and_values_percent_encoded() -> None:
    request = backend().request(options("a b+c/é&d=e%"), window_at(NOW, 300), NOW)
    query = urlsplit(request.url).query
    names = [pair.split("=", 1)[0] for pair in query.split("&")]

    assert names == sorted(names)
    assert "channelId=a%20b%2Bc%2F%C3%A9%26d%3De%25" in query
    # The CST times' space and colons are encoded too, as are base64's `+ / =` in the signature.
    assert "startTime=2030-06-01%2012%3A00%3A00" in query
    assert " " not in query
    assert "+" not in query


@given(channel=CHANNELS)
def test_any_channel_id_decodes_intact_and_adds_no_parameter(channel: str) -> None:
    request = backend().request(options(channel), window_at(NOW, 300), NOW)
    pairs = query_of(request.url)

    assert [name for name, _ in pairs].count("channelId") == 1
    assert len(pairs) == 10
    assert dict(pairs)["channelId"] == channel
    params = dict(pairs)
    text = sign_string("GET", "live.api.qcloud.com", "/v2/index.php", params)
    assert params["Signature"] == signature(SECRET_KEY, text)


@given(params=st.dictionaries(CHANNELS, CHANNELS, max_size=6))
def test_encode_query_round_trips_through_a_form_decoder(params: dict[str, str]) -> None:
    assert dict(parse_qsl(encode_query(params), keep_blank_values=True)) == params


def test_every_request_draws_a_fresh_nonce() -> None:
    rec = backend()
    nonces = {dict(query_of(rec.request(options(), window_at(NOW, 300), NOW).url))["Nonce"] for _ in range(50)}
    assert len(nonces) == 50


def test_an_injected_nonce_source_is_called_once_per_request() -> None:
    draws = iter([11, 12])
    rec = backend(nonce=lambda: next(draws))
    first = dict(query_of(rec.request(options(), window_at(NOW, 300), NOW).url))
    second = dict(query_of(rec.request(options(), window_at(NOW, 300), NOW).url))
    assert (first["Nonce"], second["Nonce"]) == ("11", "12")
    assert first["Signature"] != second["Signature"]


def test_default_nonce_is_a_positive_31_bit_integer() -> None:
    assert all(1 <= default_nonce() <= 2**31 - 1 for _ in range(1000))


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://live.api.qcloud.com/v2/index.php", "live.api.qcloud.com"),
        ("http://127.0.0.1:8080/v2/index.php", "127.0.0.1:8080"),
        ("https://LIVE.api.qcloud.com:443/v2/index.php", "live.api.qcloud.com:443"),
        ("http://[::1]:9000/v2/index.php", "[::1]:9000"),
    ],
)
def test_signed_host_keeps_the_port_only_when_the_url_names_one(url: str, host: str) -> None:
    assert signed_host(url) == host
    request = backend(url=url).request(options(), window_at(NOW, 300), NOW)
    params = dict(query_of(request.url))
    assert request.headers["Host"] == host
    assert params["Signature"] == signature(SECRET_KEY, sign_string("GET", host, "/v2/index.php", params))


def test_a_url_query_is_dropped_and_a_missing_path_means_v2_index() -> None:
    request = backend(url="https://live.api.qcloud.com").request(options(), window_at(NOW, 300), NOW)
    assert request.url.startswith("https://live.api.qcloud.com/v2/index.php?")
    request = backend(url=URL + "?x=1").request(options(), window_at(NOW, 300), NOW)
    assert "x" not in dict(query_of(request.url))


# --- the reply ---------------------------------------------------------------------------------------------------


def parse(status: int, body: bytes) -> Started:
    return create_record.parse_reply(status, body)


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [("1", 1), ("18446744073709551615", 2**64 - 1), ('"18446744073709551615"', 2**64 - 1), ("0", 0)],
)
def test_code_0_with_a_uint64_task_id_is_started(task_id: str, expected: int) -> None:
    body = f'{{"code":0,"message":"","task_id":{task_id}}}'.encode()
    assert parse(200, body) == Started(expected)


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":0,"message":""}',
        b'{"code":0,"task_id":-1}',
        b'{"code":0,"task_id":18446744073709551616}',
        b'{"code":0,"task_id":1.5}',
        b'{"code":0,"task_id":true}',
        b'{"code":0,"task_id":"12a"}',
        b"<html>oops</html>",
        b"",
        b'{"message":"no code"}',
        b'{"code":true}',
        b"[0]",
    ],
    ids=[
        "no-id",
        "negative",
        "too-big",
        "float",
        "bool",
        "not-digits",
        "html",
        "empty",
        "no-code",
        "bool-code",
        "list",
    ],
)
def test_success_without_a_valid_task_id_or_an_unreadable_body_is_in_doubt(body: bytes) -> None:
    with pytest.raises(LiveInDoubt) as raised:
        parse(200, body)
    assert raised.value.code == "invalid_reply"


@pytest.mark.parametrize(
    ("code", "error", "retriable"),
    [
        (4000, LiveRefused, False),
        (4100, LiveAccessRefused, False),
        (4104, LiveAccessRefused, False),
        (4200, LiveAccessRefused, False),
        (4300, LiveAccessRefused, False),
        (4400, LiveLimitReached, True),
        (4500, LiveRefused, True),
        (4600, LiveAccessRefused, False),
        (5000, LiveRefused, False),
        (5100, LiveRefused, False),
        (6000, LiveInDoubt, False),
        (6100, LiveAccessRefused, False),
        (6200, LiveUnreachable, True),
        (12345, LiveRefused, False),
        (-1, LiveRefused, False),
    ],
)
def test_each_api_code_is_classified_with_the_code_as_a_string(
    code: int, error: type[Exception], retriable: bool
) -> None:
    body = f'{{"code":{code},"message":"the message"}}'.encode()
    with pytest.raises(error) as raised:
        parse(200, body)
    assert type(raised.value) is error
    assert raised.value.code == str(code)  # type: ignore[attr-defined]  # every LiveError has a code
    assert raised.value.retriable is retriable  # type: ignore[attr-defined]  # every HighlightError has it
    assert "the message" in str(raised.value)


def test_a_quoted_code_is_read_as_its_number() -> None:
    with pytest.raises(LiveLimitReached) as raised:
        parse(200, b'{"code":"4400","message":"slow down"}')
    assert raised.value.retriable
    assert raised.value.code == "4400"
    assert raised.value.message == "slow down"


def test_a_refusal_without_a_message_names_its_code() -> None:
    with pytest.raises(LiveRefused, match="code 4000"):
        parse(200, b'{"code":4000}')


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_gateway_failures_are_unreachable_whatever_the_body(status: int) -> None:
    with pytest.raises(LiveUnreachable) as raised:
        parse(status, b'{"code":6000,"message":"x"}')
    assert raised.value.code == f"http_{status}"


@pytest.mark.parametrize("status", [301, 400, 403, 404])
def test_non_2xx_without_an_api_code_is_a_wrong_endpoint(status: int) -> None:
    with pytest.raises(LiveAccessRefused) as raised:
        parse(status, b"<html>Not Found</html>")
    assert raised.value.code == f"http_{status}"


def test_an_api_code_behind_a_4xx_is_classified_by_its_code() -> None:
    with pytest.raises(LiveRefused) as raised:
        parse(400, b'{"code":4400,"message":"limit"}')
    assert raised.value.retriable
    with pytest.raises(LiveAccessRefused):
        parse(404, b'{"code":0,"task_id":1}')


# --- the read-only probe (highlight check) ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["HmacSHA1", "HmacSHA256"])
def test_the_probe_lists_channels_with_the_common_parameters_signed_like_a_recording_call(method: str) -> None:
    request = backend(signature_method=method, nonce=lambda: 4242).probe(NOW)
    assert request.method == "GET"
    assert request.headers == {"Host": "live.api.qcloud.com"}
    params = dict(query_of(request.url))
    expected = {
        "Action": "DescribeLVBChannelList",
        "Region": "gz",
        "Timestamp": str(int(NOW.timestamp())),
        "Nonce": "4242",
        "SecretId": SECRET_ID,
    }
    if method == "HmacSHA256":
        expected["SignatureMethod"] = method
    assert {name: value for name, value in params.items() if name != "Signature"} == expected
    text = sign_string("GET", "live.api.qcloud.com", "/v2/index.php", params)
    assert params["Signature"] == signature(SECRET_KEY, text, method)


def test_a_probe_reply_with_code_0_is_accepted_and_counts_the_channels() -> None:
    body = b'{"code": 0, "message": "", "all_count": "2", "channelSet": []}'
    assert backend().parse_probe(200, body) == "DescribeLVBChannelList answered code 0 (2 channels)"


@pytest.mark.parametrize("code", [4100, 4101, 4200, 4300, 4600, 6100])
def test_a_probe_refused_for_credentials_clock_or_endpoint_is_access_refused(code: int) -> None:
    with pytest.raises(LiveAccessRefused) as caught:
        backend().parse_probe(200, f'{{"code": {code}, "message": "no"}}'.encode())
    assert caught.value.message.startswith("DescribeLVBChannelList refused")


@pytest.mark.parametrize("code", [4000, 5000, 5100])
def test_a_probe_refused_by_the_action_behind_the_gateway_proves_the_credentials(code: int) -> None:
    said = backend().parse_probe(200, f'{{"code": {code}, "message": "nope"}}'.encode())
    assert said == f"DescribeLVBChannelList answered code {code} (nope), after accepting the signature"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b'{"code": 4400, "message": "busy"}', LiveRefused),
        (200, b'{"code": 4500, "message": "replay"}', LiveRefused),
        (200, b'{"code": 6000, "message": "internal"}', LiveInDoubt),
        (200, b'{"code": 6200, "message": "unavailable"}', LiveUnreachable),
        (502, b"", LiveUnreachable),
        (404, b"<html/>", LiveAccessRefused),
        (200, b"<html/>", LiveInDoubt),
    ],
)
def test_a_probe_answer_that_proves_nothing_is_a_live_error(status: int, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        backend().parse_probe(status, body)
    assert "task may exist" not in str(caught.value), "a read-only call creates no task"
