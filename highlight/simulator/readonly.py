"""The read-only calls the simulator serves besides the recording ones, pure: their checks and their answers.

One per API, each listing the streams being pushed and creating nothing, each authenticated by the same gateway
checks as that API's recording call (so `highlight check` can prove the credentials without starting anything):
- `Live_Channel_GetLiveChannelList` on `/common_access` (appid, `t`, `sign`; answers `output.channel_list`);
- v2 `DescribeLVBChannelList` on `GET /v2/index.php` (the common parameters, signature and Nonce; `channelSet`);
- 3.0 `DescribeLiveStreamOnlineList` on `POST /` (the X-TC-* headers and TC3 Authorization; `OnlineInfo`).

The simulator knows a stream is pushing only when `live_channels` names it: without that list, nothing is live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import orjson

from highlight.simulator import cloud, rules, v2
from highlight.simulator.config import SimulatorConfig
from highlight.simulator.rules import Answer

LEGACY_INTERFACE = "Live_Channel_GetLiveChannelList"
V2_ACTION = "DescribeLVBChannelList"
CLOUD_ACTION = "DescribeLiveStreamOnlineList"

# v2 DescribeLVBChannelList's optional filters, each an unsigned integer.
V2_UNSIGNED = ("channelStatus", "ascDesc", "pageNo", "pageSize")
CLOUD_STRING_FIELDS = frozenset({"DomainName", "AppName", "StreamName"})
CLOUD_INT_FIELDS = frozenset({"PageNum", "PageSize"})
# The documents: PageSize is any integer from 10 to 100, 10 by default.
CLOUD_PAGE_SIZES = range(10, 101)
CLOUD_DEFAULT_PAGE_SIZE = 10
CHANNEL_STATUS_LIVE = "1"
OK = "ok"


def live_streams(config: SimulatorConfig) -> list[str]:
    if config.live_channels is None:
        return []
    return sorted(config.live_channels - config.offline_channels)


def legacy_list(query: Mapping[str, str], config: SimulatorConfig, now: float) -> Answer:
    """Live_Channel_GetLiveChannelList: the gateway's access checks, then the live channels."""
    refusal = rules.check_access(query, config, now)
    if refusal is not None:
        return rules.legacy_answer(refusal)
    channels = live_streams(config)
    output = {"all_count": len(channels), "channel_list": [{"channel_id": channel} for channel in channels]}
    body = orjson.dumps({"ret": 0, "retcode": 0, "message": "", "output": output})
    return Answer(OK, "", body)


def v2_list(
    pairs: Iterable[tuple[str, str]],
    host: str,
    path: str,
    config: SimulatorConfig,
    now: float,
    nonce_is_fresh: Callable[[str], bool],
) -> Answer:
    """DescribeLVBChannelList: the v2 gateway's checks, its filters, then the channels (numbers as strings)."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return v2.bad_parameter(f"{name} given twice")
        params[name] = value
    refusal = v2.check_access(params, host, path, config, now, nonce_is_fresh)
    if refusal is not None:
        return refusal
    for name in V2_UNSIGNED:
        given = params.get(name)
        if given is not None and not (given.isascii() and given.isdigit() and len(given) <= v2.MAX_DIGITS):
            return v2.bad_parameter(f"{name} must be an unsigned integer")
    channels = live_streams(config)
    # The documents' example writes the count and the statuses as strings.
    channel_set = [{"channel_id": c, "channel_name": c, "channel_status": CHANNEL_STATUS_LIVE} for c in channels]
    body = orjson.dumps(
        {"code": 0, "message": "", "codeDesc": "Success", "all_count": str(len(channels)), "channelSet": channel_set}
    )
    return Answer(OK, "", body)


def cloud_list(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    config: SimulatorConfig,
    now: float,
    dialect: cloud.CloudDialect,
) -> Answer:
    """DescribeLiveStreamOnlineList: the 3.0 gateway's checks, its fields, then one page of the live streams."""
    refusal = cloud.check_access(method, path, headers, body, config, now, dialect, action=CLOUD_ACTION)
    if refusal is not None:
        return refusal
    if not headers.get("Content-Type", "").lower().startswith("application/json"):
        return dialect.error("InvalidParameter", "Content-Type must be application/json with TC3-HMAC-SHA256")
    fields = cloud.read_body(body)
    if fields is None:
        return dialect.error("InvalidParameter", "the body is not a JSON object")
    for name, value in fields.items():
        if name not in CLOUD_STRING_FIELDS and name not in CLOUD_INT_FIELDS:
            return dialect.error("UnknownParameter", f"the parameter {name} is not recognized")
        if name in CLOUD_STRING_FIELDS and not isinstance(value, str):
            return dialect.error("InvalidParameter", f"{name} must be a string")
        if name in CLOUD_INT_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
            return dialect.error("InvalidParameter", f"{name} must be an integer")
    page_size = fields.get("PageSize", CLOUD_DEFAULT_PAGE_SIZE)
    page = fields.get("PageNum", 1)
    if not isinstance(page_size, int) or page_size not in CLOUD_PAGE_SIZES:
        return dialect.error("InvalidParameterValue", "PageSize must be between 10 and 100")
    if not isinstance(page, int) or page < 1:
        return dialect.error("InvalidParameterValue", "PageNum must be 1 or more")
    streams = [s for s in live_streams(config) if fields.get("StreamName") in (None, s)]
    shown = streams[(page - 1) * page_size : page * page_size]
    domain = fields.get("DomainName", "")
    online = [
        {"StreamName": s, "AppName": fields.get("AppName", "live"), "DomainName": domain, "PublishTimeList": []}
        for s in shown
    ]
    response = {
        "TotalNum": len(streams),
        "TotalPage": math.ceil(len(streams) / page_size),
        "PageNum": page,
        "PageSize": page_size,
        "OnlineInfo": online,
        "RequestId": dialect.request_id,
    }
    return Answer(OK, "", orjson.dumps({"Response": response}))
