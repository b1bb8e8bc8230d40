"""schemas/asyncapi.yaml: valid AsyncAPI 3.0.0, and in step with the code (topics, headers, schema files).

The official JSON Schema comes from its published npm package (`@asyncapi/specs`, pinned by .ci/npm's lock file
and installed by .ci/run), never from a copy in this repository.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import highlight
from highlight.config import SETTINGS
from highlight.dead_letters import DEAD_LETTER_REASONS, DLQ_REASON_HEADER

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
SPECS = ROOT / ".ci" / "npm" / "node_modules" / "@asyncapi" / "specs"
# Tools around the recorder whose headers are not part of the contract (the demo's burst marker); __main__ runs.
NOT_CONTRACT = ("highlight.demo", "highlight.simulator", "highlight.__main__")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def official_schema() -> dict[str, Any]:
    path = SPECS / "schemas" / "3.0.0.json"
    if not path.is_file():
        reason = "@asyncapi/specs is not installed (npm ci --prefix .ci/npm; .ci/run does it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}, and CI must run this test", pytrace=False)
        pytest.skip(reason)
    pinned = json.loads((ROOT / ".ci" / "npm" / "package.json").read_text())["devDependencies"]["@asyncapi/specs"]
    installed = json.loads((SPECS / "package.json").read_text())["version"]
    assert installed == pinned, f"@asyncapi/specs {installed} is installed, .ci/npm pins {pinned}: npm ci again"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def test_the_document_is_valid_asyncapi_3_0_0(document: dict[str, Any], official_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(official_schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10])


def test_the_official_schema_refuses_a_broken_document(
    document: dict[str, Any], official_schema: dict[str, Any]
) -> None:
    """The validation above can fail: an operation without its channel is not AsyncAPI."""
    broken = json.loads(json.dumps(document))
    del broken["operations"]["receiveMoments"]["channel"]
    assert not jsonschema.Draft7Validator(official_schema).is_valid(broken)


# --- in step with the code ---------------------------------------------------------------------------


def default_topics() -> set[str]:
    defaults = {setting.env: setting.default for setting in SETTINGS}
    topics = {value for env, value in defaults.items() if env.endswith("_TOPIC") and value is not None}
    # The repartition topic has no default of its own: it follows the group id.
    assert defaults["HIGHLIGHT_REPARTITION_TOPIC"] is None
    topics.add(f"{defaults['HIGHLIGHT_GROUP_ID']}.repartition")
    return topics


def test_every_default_topic_is_a_channel_and_every_channel_a_default_topic(document: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == default_topics()
    for channel in document["channels"].values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]


def test_internal_topics_are_marked_and_the_state_topic_is_compacted(document: dict[str, Any]) -> None:
    defaults = {setting.env: setting.default for setting in SETTINGS}
    internal = {
        channel["address"]
        for channel in document["channels"].values()
        if {"name": "internal"} in channel.get("tags", [])
    }
    assert internal == {defaults["HIGHLIGHT_STATE_TOPIC"], f"{defaults['HIGHLIGHT_GROUP_ID']}.repartition"}
    (state,) = [c for c in document["channels"].values() if c["address"] == defaults["HIGHLIGHT_STATE_TOPIC"]]
    assert state["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_the_consumer_group_is_the_default_group_id(document: dict[str, Any]) -> None:
    group = next(setting.default for setting in SETTINGS if setting.env == "HIGHLIGHT_GROUP_ID")
    groups = {
        operation["bindings"]["kafka"]["groupId"]["const"]
        for operation in document["operations"].values()
        if "groupId" in operation.get("bindings", {}).get("kafka", {})
    }
    assert groups == {group}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_payloads_reference_every_schema_file_and_every_reference_resolves(document: dict[str, Any]) -> None:
    files = {ref for ref in refs(document) if not ref.startswith("#")}
    assert files == {f"./{path.name}" for path in (ROOT / "schemas").glob("*.schema.json")}
    for ref in refs(document):
        if ref.startswith("#"):
            node: Any = document
            for part in ref.removeprefix("#/").split("/"):
                node = node[part]
        else:
            assert (DOCUMENT.parent / ref).is_file(), ref


def code_headers() -> set[str]:
    """Every header name highlight writes: module-level constants named *_HEADER, CONNECT_* or SPRING_*."""
    names: set[str] = set()
    for module_info in pkgutil.walk_packages(highlight.__path__, "highlight."):
        if module_info.name.startswith(NOT_CONTRACT):
            continue
        module = importlib.import_module(module_info.name)
        for attr, value in vars(module).items():
            if isinstance(value, str) and (attr.endswith("_HEADER") or attr.startswith(("CONNECT_", "SPRING_"))):
                names.add(value)
    return names


def document_headers(document: dict[str, Any]) -> set[str]:
    return {
        name
        for message in document["components"]["messages"].values()
        for name in message.get("headers", {}).get("properties", {})
    }


def test_every_header_highlight_writes_is_documented_and_no_other(document: dict[str, Any]) -> None:
    written = code_headers()
    assert "highlight.dlq.reason" in written, "the header scan found nothing: it cannot fail"
    assert document_headers(document) == written


def test_the_dead_letter_reasons_are_the_ones_the_code_writes(document: dict[str, Any]) -> None:
    reason = document["components"]["messages"]["deadLetter"]["headers"]["properties"][DLQ_REASON_HEADER]
    assert reason["enum"] == list(DEAD_LETTER_REASONS)
