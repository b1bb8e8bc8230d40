"""Log set-up (highlight.logs): JSON or console lines, and no secret or signature in any of them."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from highlight import config, logs
from highlight.logs import MASK, Redactor

KEY = "live-key-0123456789abcdef"
SECRET_KEY = "cloud-secret-key-fedcba9876543210"  # noqa: S105 -- a made-up value the tests look for


@pytest.fixture(autouse=True)
def _restore_structlog() -> object:
    yield
    structlog.reset_defaults()
    for handler in logging.getLogger().handlers:
        for stale in [f for f in handler.filters if isinstance(f, logs._RedactingFilter)]:
            handler.removeFilter(stale)


def test_secrets_of_finds_every_secret_setting() -> None:
    settings = config.load(
        {
            "HIGHLIGHT_LIVE_APPID": "1",
            "HIGHLIGHT_LIVE_KEY": KEY,
            "HIGHLIGHT_SECRET_ID": "AKIDx",
            "HIGHLIGHT_SECRET_KEY": SECRET_KEY,
            "HIGHLIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "HIGHLIGHT_KAFKA_SASL_MECHANISM": "PLAIN",
            "HIGHLIGHT_KAFKA_SASL_USERNAME": "user",
            "HIGHLIGHT_KAFKA_SASL_PASSWORD": "sasl-password-1",
        }
    )
    assert sorted(logs.secrets_of(settings)) == sorted([KEY, SECRET_KEY, "sasl-password-1"])


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET /common_access?appid=1&t=1700000060&sign=b17971b51ba0fe5916ddcd96692e9fb3 failed", "b17971b5"),
        ("Signature=HgIYOPcx5lN6gz8JsCFBNAWp2oQ%3D&Timestamp=1", "HgIYOPcx5lN6"),
        (
            "Authorization: TC3-HMAC-SHA256 Credential=AKID/2024-05-01/live/tc3_request, "
            "SignedHeaders=content-type;host, "
            "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c",
            "2230eefd229f",
        ),
        (f"the key is {KEY} and again {KEY}", KEY),
    ],
)
def test_signatures_and_secret_values_are_masked(text: str, hidden: str) -> None:
    cleaned = Redactor([KEY]).text(text)
    assert hidden not in cleaned
    assert MASK in cleaned


@given(st.text(max_size=200))
def test_masking_never_leaves_a_secret_whatever_surrounds_it(noise: str) -> None:
    cleaned = Redactor([KEY, SECRET_KEY]).text(f"{noise}{KEY}{noise}{SECRET_KEY}{noise}")
    assert KEY not in cleaned
    assert SECRET_KEY not in cleaned


def test_json_lines_carry_bound_context_and_never_a_secret() -> None:
    stream = io.StringIO()
    logs.configure("json", "debug", stream, secrets=[KEY])
    log = structlog.get_logger("t").bind(topic="m", partition=3, offset=42)
    log.info("moment_answered", channel_id="c", error={"message": f"bad key {KEY}"}, items=[KEY])
    line = orjson.loads(stream.getvalue().splitlines()[-1])
    assert (line["event"], line["topic"], line["partition"], line["offset"]) == ("moment_answered", "m", 3, 42)
    assert KEY not in stream.getvalue()
    assert line["error"]["message"] == f"bad key {MASK}"


def test_exceptions_are_masked_in_formatted_tracebacks() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream, secrets=[KEY])
    try:
        raise ValueError(f"https://x/?sign=0123456789abcdef0123456789abcdef&key={KEY}")
    except ValueError:
        structlog.get_logger("t").exception("crashed")
    assert KEY not in stream.getvalue()
    assert "0123456789abcdef0123456789abcdef" not in stream.getvalue()


def test_standard_library_records_are_masked_too() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream, secrets=[KEY])
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logs.configure("json", "info", stream, secrets=[KEY])  # filters go on every root handler
        logging.getLogger("aiohttp.client").warning("failed %s", f"http://h/?sign=abcdef0123456789&x={KEY}")
    finally:
        root.removeHandler(handler)
    assert KEY not in stream.getvalue()
    assert "abcdef0123456789" not in stream.getvalue()


def test_console_format_is_readable_text() -> None:
    stream = io.StringIO()
    logs.configure("console", "info", stream)
    structlog.get_logger("t").info("service_started", partitions=4)
    assert "service_started" in stream.getvalue()
    assert not stream.getvalue().lstrip().startswith("{")
