"""The one error policy (highlight.apis.policy): every code of every API walked through its real reply parser."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from highlight.apis import create_live_record, create_record, live_tape_start
from highlight.apis.policy import POLICY, Situation, final_status
from highlight.errors import LiveError, LiveLimitReached

MESSAGE = "the API's own words"


def legacy_reply(code: int | str) -> Callable[[], object]:
    return lambda: live_tape_start.parse_reply(200, orjson.dumps({"ret": code, "message": MESSAGE}))


def v2_reply(code: int | str) -> Callable[[], object]:
    return lambda: create_record.parse_reply(200, orjson.dumps({"code": code, "message": MESSAGE}))


def cloud_reply(code: int | str) -> Callable[[], object]:
    body = {"Response": {"Error": {"Code": code, "Message": MESSAGE}, "RequestId": "req-1"}}
    return lambda: create_live_record.parse_reply(200, orjson.dumps(body))


def cloud_examples(pattern: str) -> list[str]:
    """Concrete codes a pattern of the 3.0 table stands for."""
    if pattern.endswith(".*"):
        return [pattern[:-2], pattern[:-2] + ".Something"]
    if pattern.endswith("*"):
        return [pattern[:-1], pattern[:-1] + "Something"]
    return [pattern]


# (api, code, the situation its table names, the parser fed a real reply carrying the code)
EVERY_CODE: list[tuple[str, int | str, Situation, Callable[[], object]]] = [
    *[("live_tape_start", c, s, legacy_reply(c)) for c, s in live_tape_start.ERROR_TABLE.items()],
    ("live_tape_start", 4321, live_tape_start.DEFAULT_SITUATION, legacy_reply(4321)),
    *[("create_record", c, s, v2_reply(c)) for c, s in create_record.ERROR_TABLE.items()],
    ("create_record", 4321, create_record.DEFAULT_SITUATION, v2_reply(4321)),
    *[
        ("create_live_record", code, s, cloud_reply(code))
        for pattern, s in create_live_record.ERROR_TABLE
        for code in cloud_examples(pattern)
    ],
    ("create_live_record", "Brand.New", create_live_record.DEFAULT_SITUATION, cloud_reply("Brand.New")),
]


@pytest.mark.parametrize(("api", "code", "situation", "parse"), EVERY_CODE, ids=lambda v: str(v)[:40])
def test_every_code_of_every_api_gets_its_situations_one_rule(
    api: str, code: int | str, situation: Situation, parse: Callable[[], object]
) -> None:
    if api == "create_live_record":
        # Also proves the table's order: no earlier pattern shadows this one.
        assert create_live_record.situation_of(str(code)) is situation
    rule = POLICY[situation]
    with pytest.raises(LiveError) as raised:
        parse()
    error = raised.value
    assert type(error) is rule.error
    assert error.retriable is rule.retriable
    assert error.code == str(code)
    assert MESSAGE in error.message
    assert getattr(error, "reason", None) == rule.skip_reason


def test_every_situation_has_a_rule_and_every_limit_a_reason() -> None:
    assert set(POLICY) == set(Situation)
    for rule in POLICY.values():
        assert (rule.error is LiveLimitReached) == (rule.skip_reason is not None)


# The six situations the issue names, in each API's own code. v2 has one code (4400) for the two limits and the
# frequency limit: it is retried like a frequency limit, and what outlasts the retries is the running limit.
SITUATIONS: dict[str, dict[str, int | str]] = {
    "internal error": {"live_tape_start": 1201, "create_record": 6000, "create_live_record": "InternalError"},
    "frequency limit": {"live_tape_start": 1202, "create_record": 4400, "create_live_record": "RequestLimitExceeded"},
    "running limit": {
        "live_tape_start": 1206,
        "create_record": 4400,
        "create_live_record": "LimitExceeded.MaximumRunningTask",
    },
    "daily limit": {"live_tape_start": 1207, "create_record": 4400, "create_live_record": "LimitExceeded.MaximumTask"},
    "stream not live": {
        "live_tape_start": 1301,
        "create_record": 5100,
        "create_live_record": "ResourceUnavailable.StreamNotExist",
    },
    "bad parameter": {"live_tape_start": 1204, "create_record": 4000, "create_live_record": "InvalidParameter"},
}
# (retried first, the answer once the retries are spent, its reason)
EXPECTED = {
    "internal error": (False, "in_doubt", None),
    "frequency limit": (True, "failed", None),
    "running limit": (False, "skipped", "running_limit"),
    "daily limit": (False, "skipped", "daily_limit"),
    "stream not live": (False, "failed", None),
    "bad parameter": (False, "failed", None),
}
V2_LIMIT_OR_FREQUENCY = (True, "skipped", "running_limit")
REPLY = {"live_tape_start": legacy_reply, "create_record": v2_reply, "create_live_record": cloud_reply}


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_the_same_situation_is_answered_alike_by_all_three_apis(situation: str) -> None:
    answers = {}
    for api, code in SITUATIONS[situation].items():
        with pytest.raises(LiveError) as raised:
            REPLY[api](code)()
        error = raised.value
        answers[api] = (error.retriable, final_status(error), getattr(error, "reason", None))
    expected = dict.fromkeys(SITUATIONS[situation], EXPECTED[situation]) | {"create_record": V2_LIMIT_OR_FREQUENCY}
    if situation in ("internal error", "stream not live", "bad parameter"):
        expected["create_record"] = EXPECTED[situation]
    assert answers == expected
