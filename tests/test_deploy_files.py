"""Structural checks of the deployment files: Dockerfile, .dockerignore, docker-compose.yml and deploy/.

No Docker engine is needed (nor available in CI): the files are parsed, and each test pins one property a
deployment relies on. Configuration names are checked against `highlight.config.ENV_DEFAULTS`, the single
list of documented settings; metric names in the dashboard and the alerting rules against the registries of
`highlight.metrics.Metrics` and `ReceiverMetrics`, the single lists of instruments. The real tools check them
too: `promtool` (Debian's `prometheus` package) the Prometheus files, `dclint` (npm, the version .ci/run pins)
the compose file against the Compose Specification and the rules configured in .dclintrc.yml. .ci/run
installs both; where one is missing the test skips saying so, except in CI, where it fails.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from highlight.callbacks.receiver import PATH as CALLBACK_PATH
from highlight.config import DEFAULT_LIVE_URLS, ENV_DEFAULTS
from highlight.metrics import Metrics, ReceiverMetrics
from tests import harness

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LIVE_ENV_EXAMPLE = ROOT / "deploy" / "live.env.example"
KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"
README = ROOT / "README.md"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "highlight.json"
CI_SCRIPT = ROOT / ".ci" / "run"
DCLINT_CONFIG = ROOT / ".dclintrc.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

REAL_BLOCK_BEGIN = "# >>> real-endpoint"
REAL_BLOCK_END = "# <<< real-endpoint"
REAL_SERVICE = "recorder-live"
REAL_ENV_FILE = "./deploy/live.env"

HIGHLIGHT_NAME = re.compile(r"\bHIGHLIGHT_[A-Z0-9_]+\b")
# The service stops within 30 s of SIGTERM; whatever kills it must wait longer.
DRAIN_BOUND_SECONDS = 30
METRICS_PORT = ENV_DEFAULTS["HIGHLIGHT_METRICS_PORT"]
# The real endpoint of the default API (HIGHLIGHT_LIVE_URL defaults to the chosen API's endpoint).
DEFAULT_LIVE_URL = ENV_DEFAULTS["HIGHLIGHT_LIVE_URL"] or DEFAULT_LIVE_URLS[ENV_DEFAULTS["HIGHLIGHT_LIVE_API"]]


# --------------------------------------------------------------------------------------------------------
# Parsing helpers


def read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def uncomment_real_endpoint(text: str) -> str:
    """The compose text with the commented real-endpoint block between the markers turned into YAML."""
    lines = text.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == REAL_BLOCK_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == REAL_BLOCK_END]
    assert len(begins) == 1, f"expected one {REAL_BLOCK_BEGIN!r} marker line, found {len(begins)}"
    assert len(ends) == 1, f"expected one {REAL_BLOCK_END!r} marker line, found {len(ends)}"
    begin, end = begins[0], ends[0]
    assert begin < end, "the real-endpoint markers are out of order"
    for i in range(begin + 1, end):
        assert not lines[i].strip() or lines[i].lstrip().startswith("#"), (
            f"line {i + 1} inside the real-endpoint block is live YAML; the block must stay commented"
        )
        lines[i] = re.sub(r"^(\s*)# ?", r"\1", lines[i], count=1)
    return "\n".join(lines) + "\n"


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {name: value for name, _, value in pairs}
    return {name: "" if value is None else str(value) for name, value in env.items()}


def script_of(service: dict[str, Any]) -> str:
    """The entrypoint and command of a service as one shell text, backslash continuations joined."""
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(str(item) for item in value)
    return "\n".join(parts).replace("\\\n", " ")


@dataclass
class TopicSpec:
    partitions: int | None = None
    replication_factor: int | None = None
    configs: dict[str, str] = field(default_factory=dict)
    if_not_exists: bool = False


def created_topics(service: dict[str, Any]) -> dict[str, TopicSpec]:
    """Every `kafka-topics.sh --create` of a one-shot service, by topic name."""
    topics: dict[str, TopicSpec] = {}
    for line in script_of(service).splitlines():
        if "kafka-topics" not in line or "--create" not in line:
            continue
        args = shlex.split(line)
        spec = TopicSpec(if_not_exists="--if-not-exists" in args)
        name = None
        for flag, value in zip(args, [*args[1:], ""], strict=True):
            if flag == "--topic":
                name = value
            elif flag == "--partitions":
                spec.partitions = int(value)
            elif flag == "--replication-factor":
                spec.replication_factor = int(value)
            elif flag == "--config":
                key, _, setting = value.partition("=")
                spec.configs[key] = setting
        assert name, f"a kafka-topics.sh --create without --topic: {line.strip()}"
        assert name not in topics, f"topic {name} is created twice"
        topics[name] = spec
    return topics


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None


def image_ref(image: str) -> ImageRef:
    rest, _, digest = image.partition("@")
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        return ImageRef(rest[:colon], rest[colon + 1 :], digest or None)
    return ImageRef(rest, None, digest or None)


def is_local_image_name(name: str) -> bool:
    """No registry host in front, so `docker compose build` names it and nothing pulls it."""
    first = name.split("/", 1)[0]
    return "/" not in name or not ("." in first or ":" in first or first == "localhost")


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    assert parts, f"not a compose duration: {text!r}"
    assert "".join(number + unit for number, unit in parts) == text, f"not a compose duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def option(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    index = args.index(flag)
    assert index + 1 < len(args), f"{flag} has no value in {args}"
    return args[index + 1]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def strip_flags(arguments: str) -> str:
    """An instruction's arguments after its leading --options (HEALTHCHECK, COPY, RUN)."""
    while arguments.startswith("--"):
        _, _, arguments = arguments.partition(" ")
        arguments = arguments.lstrip()
    return arguments


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path, or any of its parent directories, decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                close = pattern.index("]", i)
                out += pattern[i : close + 1]
                i = close + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out)

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        if any(regex(pattern).fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in read(DOCKERIGNORE).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def env_file_entries(text: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not NAME=value: {line!r}"
        entries[name.strip()] = value.strip()
    return entries


# --------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def compose_text() -> str:
    return read(COMPOSE)


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    document = yaml.safe_load(compose_text)
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services"
    return found


@pytest.fixture(scope="module")
def real_services(compose_text: str) -> dict[str, dict[str, Any]]:
    """The services once the real-endpoint block is uncommented."""
    document = yaml.safe_load(uncomment_real_endpoint(compose_text))
    found: dict[str, dict[str, Any]] = document["services"]
    return found


@pytest.fixture(scope="module")
def topics(services: dict[str, dict[str, Any]]) -> dict[str, TopicSpec]:
    assert "topics-init" in services, "no topics-init service"
    return created_topics(services["topics-init"])


@pytest.fixture(scope="module")
def sim_args(services: dict[str, dict[str, Any]]) -> list[str]:
    assert "live-sim" in services, "no live-sim service"
    command = services["live-sim"].get("command")
    assert isinstance(command, list), "live-sim's command must be an exec-form list"
    assert command[0] == "simulate-live", f"live-sim does not run simulate-live: {command}"
    return [str(arg) for arg in command]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(read(DOCKERFILE))


@pytest.fixture(scope="module")
def kubernetes() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(read(KUBERNETES)) if doc]


def k8s_workload(kubernetes: list[dict[str, Any]], name: str) -> dict[str, Any]:
    workloads = [doc for doc in kubernetes if doc["kind"] in {"Deployment", "StatefulSet"}]
    (workload,) = [doc for doc in workloads if doc["metadata"]["name"] == name]
    return workload


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "expected one container"
    container: dict[str, Any] = containers[0]
    return container


@pytest.fixture(scope="module")
def k8s_recorder(kubernetes: list[dict[str, Any]]) -> dict[str, Any]:
    return k8s_workload(kubernetes, "highlight-recorder")


@pytest.fixture(scope="module")
def k8s_container(k8s_recorder: dict[str, Any]) -> dict[str, Any]:
    return only_container(k8s_recorder)


@pytest.fixture(scope="module")
def k8s_receiver(kubernetes: list[dict[str, Any]]) -> dict[str, Any]:
    return k8s_workload(kubernetes, "highlight-callbacks")


# --------------------------------------------------------------------------------------------------------
# Names: every HIGHLIGHT_* name anywhere in the deployment files is a documented setting


@pytest.mark.parametrize(
    "path",
    [COMPOSE, DOCKERFILE, LIVE_ENV_EXAMPLE, KUBERNETES, PROMETHEUS_CONFIG, ALERTS, DASHBOARD],
    ids=lambda path: path.name,
)
def test_every_highlight_name_in_deploy_file_is_documented(path: Path) -> None:
    """Comments included: the real-endpoint block and the docs in comments must not drift from the config."""
    unknown = sorted(set(HIGHLIGHT_NAME.findall(read(path))) - set(ENV_DEFAULTS))
    assert not unknown, f"{path.name} names settings highlight.config does not document: {unknown}"


def test_compose_highlight_services_set_only_documented_settings(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]]
) -> None:
    """Every environment key of a service running the highlight image is a documented HIGHLIGHT_* name."""
    checked = 0
    for name, service in {**services, **real_services}.items():
        if service.get("image") != services["recorder"]["image"]:
            continue
        checked += 1
        unknown = sorted(set(environment(service)) - set(ENV_DEFAULTS))
        assert not unknown, f"service {name} sets undocumented variables: {unknown}"
    assert checked >= 3, "expected live-sim, recorder and recorder-live to run the highlight image"


# --------------------------------------------------------------------------------------------------------
# Images


def test_compose_every_image_is_pinned_to_an_explicit_tag(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service, f"service {name} has no image (a built service must name its image too)"
        ref = image_ref(service["image"])
        assert ref.tag or ref.digest, f"service {name}: image {service['image']!r} has no tag"
        assert ref.tag != "latest", f"service {name}: image {service['image']!r} is not pinned"


def test_compose_built_images_have_local_names(services: dict[str, dict[str, Any]]) -> None:
    built = {name: service for name, service in services.items() if "build" in service}
    assert built, "no service builds the image from this repository"
    for name, service in built.items():
        ref = image_ref(service["image"])
        assert is_local_image_name(ref.name), f"service {name} builds but names a registry image {ref.name!r}"


def test_compose_built_images_are_never_pulled(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]]
) -> None:
    """With `build` and `image` but no pull_policy, Compose first tries to pull `highlight:local` from a registry."""
    built = {name: service for name, service in {**services, **real_services}.items() if "build" in service}
    assert {"live-sim", REAL_SERVICE} <= set(built), sorted(built)
    for name, service in built.items():
        assert service.get("pull_policy") == "build", f"{name} builds {service['image']} but may pull it instead"


def test_compose_highlight_services_share_the_image_built_from_this_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    builder = services["live-sim"]
    context = builder["build"] if isinstance(builder["build"], str) else builder["build"].get("context", ".")
    assert Path(context) == Path("."), f"live-sim builds from {context!r}, not the repository root"
    assert services["recorder"]["image"] == builder["image"], "recorder and live-sim run different images"


def test_compose_kafka_is_apache_kafka_at_an_exact_version(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "topics-init"):
        image = services[name]["image"]
        assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", image), f"{name} image {image!r}"
    assert services["kafka"]["image"] == services["topics-init"]["image"], "kafka and topics-init differ"


# --------------------------------------------------------------------------------------------------------
# Kafka


def test_compose_kafka_runs_kraft_without_zookeeper(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    roles = {role.strip() for role in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert {"broker", "controller"} <= roles, f"KAFKA_PROCESS_ROLES={env.get('KAFKA_PROCESS_ROLES')!r}"
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    assert voters.startswith(f"{env.get('KAFKA_NODE_ID')}@"), f"the node is not its own voter: {voters!r}"
    assert env.get("KAFKA_CONTROLLER_LISTENER_NAMES"), "no KAFKA_CONTROLLER_LISTENER_NAMES"
    for name, service in services.items():
        assert "zookeeper" not in f"{name} {service.get('image', '')}".lower(), f"service {name} is ZooKeeper"
        zookeeper_settings = [key for key in environment(service) if "ZOOKEEPER" in key.upper()]
        assert not zookeeper_settings, f"service {name} configures ZooKeeper: {zookeeper_settings}"


def test_compose_kafka_single_node_internal_topics_have_one_replica(
    services: dict[str, dict[str, Any]],
) -> None:
    """With the default of 3, a single broker never creates __consumer_offsets and no group ever forms."""
    env = environment(services["kafka"])
    assert env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") == "1"
    assert env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR") == "1"


def test_compose_kafka_advertises_the_recorders_bootstrap_address(
    services: dict[str, dict[str, Any]],
) -> None:
    advertised = environment(services["kafka"]).get("KAFKA_ADVERTISED_LISTENERS", "")
    addresses = {entry.split("://", 1)[-1] for entry in advertised.split(",")}
    bootstrap = environment(services["recorder"])["HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS"]
    for server in bootstrap.split(","):
        assert server in addresses, f"recorder bootstraps from {server}, kafka advertises {sorted(addresses)}"


def test_compose_kafka_advertises_its_host_listener_where_it_is_published(
    services: dict[str, dict[str, Any]],
) -> None:
    """Published on 127.0.0.1 only, so the address a host client is sent to must be 127.0.0.1, not `localhost`
    (which may resolve to ::1, where nothing listens)."""
    kafka = services["kafka"]
    advertised = environment(kafka).get("KAFKA_ADVERTISED_LISTENERS", "")
    published = {(address, host_port) for address, host_port, _ in published_ports(kafka)}
    listeners = [entry.split("://", 1)[-1] for entry in advertised.split(",")]
    host_listeners = [listener for listener in listeners if listener.rpartition(":")[0] != "kafka"]
    assert host_listeners, f"no listener for clients on the host: {advertised}"
    for listener in host_listeners:
        host, _, port = listener.rpartition(":")
        assert (host, int(port)) in published, f"kafka advertises {listener}, publishes {sorted(published)}"


def test_compose_kafka_healthcheck_uses_the_kafka_cli(services: dict[str, dict[str, Any]]) -> None:
    test = services["kafka"].get("healthcheck", {}).get("test")
    assert test, "kafka has no healthcheck, so service_healthy never holds"
    text = " ".join(test) if isinstance(test, list) else test
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", text), text


# --------------------------------------------------------------------------------------------------------
# Topics


def test_compose_topics_init_creates_exactly_the_documented_topics(topics: dict[str, TopicSpec]) -> None:
    expected = {
        ENV_DEFAULTS["HIGHLIGHT_MOMENTS_TOPIC"],
        ENV_DEFAULTS["HIGHLIGHT_RESULTS_TOPIC"],
        ENV_DEFAULTS["HIGHLIGHT_DLQ_TOPIC"],
        ENV_DEFAULTS["HIGHLIGHT_STATE_TOPIC"],
        ENV_DEFAULTS["HIGHLIGHT_REPARTITION_TOPIC"] or f"{ENV_DEFAULTS['HIGHLIGHT_GROUP_ID']}.repartition",
        ENV_DEFAULTS["HIGHLIGHT_CALLBACKS_TOPIC"],
        ENV_DEFAULTS["HIGHLIGHT_CLIPS_TOPIC"],
    }
    assert set(topics) == expected


def test_compose_recorder_topic_settings_match_the_created_topics(
    services: dict[str, dict[str, Any]], topics: dict[str, TopicSpec]
) -> None:
    env = environment(services["recorder"])
    group = env.get("HIGHLIGHT_GROUP_ID", ENV_DEFAULTS["HIGHLIGHT_GROUP_ID"])
    names = {
        setting: env.get(setting, ENV_DEFAULTS[setting])
        for setting in (
            "HIGHLIGHT_MOMENTS_TOPIC",
            "HIGHLIGHT_RESULTS_TOPIC",
            "HIGHLIGHT_DLQ_TOPIC",
            "HIGHLIGHT_STATE_TOPIC",
            "HIGHLIGHT_CALLBACKS_TOPIC",
            "HIGHLIGHT_CLIPS_TOPIC",
        )
    }
    names["HIGHLIGHT_REPARTITION_TOPIC"] = env.get("HIGHLIGHT_REPARTITION_TOPIC") or f"{group}.repartition"
    for setting, topic in names.items():
        assert topic in topics, f"recorder's {setting}={topic} is not created by topics-init"


def test_compose_state_topic_is_compacted_with_the_moments_partition_count(
    topics: dict[str, TopicSpec],
) -> None:
    moments = topics[ENV_DEFAULTS["HIGHLIGHT_MOMENTS_TOPIC"]]
    state = topics[ENV_DEFAULTS["HIGHLIGHT_STATE_TOPIC"]]
    assert state.configs.get("cleanup.policy") == "compact", f"state topic configs: {state.configs}"
    assert state.partitions == moments.partitions, "the state topic is co-partitioned with the moments topic"


def test_compose_repartition_topic_has_the_moments_partition_count(topics: dict[str, TopicSpec]) -> None:
    repartition = ENV_DEFAULTS["HIGHLIGHT_REPARTITION_TOPIC"] or f"{ENV_DEFAULTS['HIGHLIGHT_GROUP_ID']}.repartition"
    assert topics[repartition].partitions == topics[ENV_DEFAULTS["HIGHLIGHT_MOMENTS_TOPIC"]].partitions


def test_compose_callbacks_topic_has_the_moments_partition_count(topics: dict[str, TopicSpec]) -> None:
    """A channel's recording files live at its moments' partition index, so its state's owner reads them."""
    callbacks = topics[ENV_DEFAULTS["HIGHLIGHT_CALLBACKS_TOPIC"]]
    assert callbacks.partitions == topics[ENV_DEFAULTS["HIGHLIGHT_MOMENTS_TOPIC"]].partitions


def test_compose_topics_init_is_an_idempotent_one_shot_with_explicit_layout(
    services: dict[str, dict[str, Any]], topics: dict[str, TopicSpec]
) -> None:
    init = services["topics-init"]
    assert init.get("restart") == "no", "topics-init must not restart after it succeeds"
    assert init.get("depends_on", {}).get("kafka", {}).get("condition") == "service_healthy"
    for name, spec in topics.items():
        assert spec.if_not_exists, f"{name}: without --if-not-exists a second `up` fails"
        assert spec.partitions, f"{name}: no explicit --partitions, so the broker default decides"
        assert spec.partitions > 1, f"{name}: one partition leaves every replica but one idle"
        assert spec.replication_factor == 1, f"{name}: a single broker holds one replica"


# --------------------------------------------------------------------------------------------------------
# The simulator and the recorder


def test_compose_live_sim_healthcheck_probes_sim_healthz(
    services: dict[str, dict[str, Any]], sim_args: list[str]
) -> None:
    test = services["live-sim"].get("healthcheck", {}).get("test")
    assert test, "live-sim has no healthcheck, so service_healthy never holds"
    text = " ".join(test) if isinstance(test, list) else test
    assert f":{option(sim_args, '--port')}/_sim/healthz" in text, text
    assert "curl" not in text, "python:slim has no curl"
    assert "wget" not in text, "python:slim has no wget"


def test_compose_recorder_depends_on_kafka_topics_and_simulator_being_ready(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["recorder"].get("depends_on") == {
        "kafka": {"condition": "service_healthy"},
        "topics-init": {"condition": "service_completed_successfully"},
        "live-sim": {"condition": "service_healthy"},
    }


def test_compose_recorder_runs_at_least_two_replicas(services: dict[str, dict[str, Any]]) -> None:
    recorder = services["recorder"]
    replicas = recorder.get("deploy", {}).get("replicas", recorder.get("scale", 1))
    assert int(replicas) >= 2, f"recorder replicas: {replicas}"


def test_compose_recorder_can_scale_without_name_or_port_clashes(services: dict[str, dict[str, Any]]) -> None:
    recorder = services["recorder"]
    assert "container_name" not in recorder, "a fixed container_name allows one replica only"
    assert "ports" not in recorder, "a published host port allows one replica only (use expose)"
    assert "HIGHLIGHT_GROUP_INSTANCE_ID" not in environment(recorder), (
        "replicas sharing one static group.instance.id fence each other off"
    )


def test_compose_recorder_stop_grace_period_outlasts_the_drain(services: dict[str, dict[str, Any]]) -> None:
    grace = services["recorder"].get("stop_grace_period")
    assert grace, "without stop_grace_period compose kills the recorder after 10 s, mid-drain"
    assert duration_seconds(grace) > DRAIN_BOUND_SECONDS


def test_compose_recorder_live_settings_match_the_simulator(
    services: dict[str, dict[str, Any]], sim_args: list[str]
) -> None:
    env = environment(services["recorder"])
    url = urlsplit(env["HIGHLIGHT_LIVE_URL"])
    assert url.hostname == "live-sim", f"recorder calls {url.hostname}, not the simulator"
    assert str(url.port) == option(sim_args, "--port")
    assert url.path == urlsplit(DEFAULT_LIVE_URL).path, "same path as the real endpoint"
    assert env["HIGHLIGHT_LIVE_APPID"] == option(sim_args, "--appid")
    assert env["HIGHLIGHT_LIVE_KEY"] == option(sim_args, "--key")


# --------------------------------------------------------------------------------------------------------
# The callback receiver


def test_compose_callbacks_runs_the_receiver_from_the_shared_image_after_its_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    receiver = services["callbacks"]
    assert receiver.get("command") == ["callbacks"]
    assert receiver["image"] == services["recorder"]["image"]
    assert receiver.get("depends_on") == {
        "kafka": {"condition": "service_healthy"},
        "topics-init": {"condition": "service_completed_successfully"},
    }
    assert "ports" not in receiver, "a published host port allows one replica only (use expose)"
    assert "container_name" not in receiver, "a fixed container_name allows one replica only"


def test_compose_callbacks_shares_the_recorders_kafka_and_topics(services: dict[str, dict[str, Any]]) -> None:
    receiver, recorder = environment(services["callbacks"]), environment(services["recorder"])
    for setting in ("HIGHLIGHT_KAFKA_BOOTSTRAP_SERVERS", "HIGHLIGHT_MOMENTS_TOPIC", "HIGHLIGHT_CALLBACKS_TOPIC"):
        assert receiver.get(setting, ENV_DEFAULTS[setting]) == recorder.get(setting, ENV_DEFAULTS[setting]), setting


def test_compose_simulator_calls_the_receiver_with_its_callback_key(
    services: dict[str, dict[str, Any]], sim_args: list[str]
) -> None:
    receiver = environment(services["callbacks"])
    url = urlsplit(option(sim_args, "--callback-url"))
    assert url.hostname == "callbacks"
    assert str(url.port) == receiver.get("HIGHLIGHT_CALLBACK_PORT", ENV_DEFAULTS["HIGHLIGHT_CALLBACK_PORT"])
    assert url.path == CALLBACK_PATH
    assert receiver["HIGHLIGHT_CALLBACK_KEY"] == option(sim_args, "--callback-key")
    assert "sim" in receiver["HIGHLIGHT_CALLBACK_KEY"], "the simulator's own key, not a Tencent one"
    exposed = {str(entry) for entry in services["callbacks"].get("expose") or []}
    assert {str(url.port), receiver.get("HIGHLIGHT_METRICS_PORT", METRICS_PORT)} <= exposed


# --------------------------------------------------------------------------------------------------------
# The real endpoint and its key


def test_compose_real_endpoint_block_is_off_by_default(services: dict[str, dict[str, Any]]) -> None:
    assert REAL_SERVICE not in services


def test_compose_real_endpoint_block_reads_credentials_from_the_env_file(
    real_services: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    assert REAL_SERVICE in real_services, f"the uncommented block defines no {REAL_SERVICE} service"
    real = real_services[REAL_SERVICE]
    env_files = real.get("env_file")
    env_files = [env_files] if isinstance(env_files, str) else env_files or []
    paths = [entry if isinstance(entry, str) else entry["path"] for entry in env_files]
    assert paths == [REAL_ENV_FILE], f"{REAL_SERVICE} env_file: {paths}"
    env = environment(real)
    # `environment` beats `env_file`: any of these set inline would shadow (or leak) the file's values.
    for setting in ("HIGHLIGHT_LIVE_URL", "HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"):
        assert setting not in env, f"{REAL_SERVICE} sets {setting} inline; it belongs in {REAL_ENV_FILE}"
    assert real.get("image") == services["recorder"]["image"]
    assert "live-sim" not in (real.get("depends_on") or {}), "the real recorder does not need the simulator"


def test_compose_holds_no_live_key_but_the_simulators(
    compose_text: str, real_services: dict[str, dict[str, Any]], sim_args: list[str]
) -> None:
    sim_key = option(sim_args, "--key")
    assert "sim" in sim_key.lower(), f"the simulator's key {sim_key!r} should read as the simulator's"
    for name, service in real_services.items():
        env = environment(service)
        if "HIGHLIGHT_LIVE_KEY" not in env:
            continue
        assert env["HIGHLIGHT_LIVE_KEY"] == sim_key, f"service {name} holds a Live key other than the sim's"
        assert urlsplit(env.get("HIGHLIGHT_LIVE_URL", "")).hostname == "live-sim", (
            f"service {name} sends a key to {env.get('HIGHLIGHT_LIVE_URL')!r}, not the simulator"
        )
    for number, line in enumerate(compose_text.splitlines(), start=1):
        comment = line.partition("#")[2]
        assert not re.search(r"HIGHLIGHT_LIVE_KEY\s*[:=]\s*\S", comment), (
            f"line {number}: a Live key value in a comment is one uncomment away from the file"
        )


def test_live_env_example_documents_the_real_endpoint_with_placeholders() -> None:
    entries = env_file_entries(read(LIVE_ENV_EXAMPLE))
    assert set(entries) <= set(ENV_DEFAULTS), f"undocumented names: {sorted(set(entries) - set(ENV_DEFAULTS))}"
    assert {"HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"} <= set(entries)
    assert entries.get("HIGHLIGHT_LIVE_URL", DEFAULT_LIVE_URL) == DEFAULT_LIVE_URL
    for setting in ("HIGHLIGHT_LIVE_APPID", "HIGHLIGHT_LIVE_KEY"):
        assert "REPLACE" in entries[setting].upper(), f"{setting} in the example must be a placeholder"


def test_gitignore_ignores_the_real_env_file_but_not_the_example() -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    inside = subprocess.run(
        [git, "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.stdout.strip() != "true":
        pytest.skip("not a git work tree")

    def ignored(path: str) -> bool:
        done = subprocess.run([git, "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], check=False)
        assert done.returncode in (0, 1), f"git check-ignore failed on {path}"
        return done.returncode == 0

    assert ignored("deploy/live.env"), "add `deploy/*.env` to .gitignore: deploy/live.env holds the Live key"
    assert not ignored("deploy/live.env.example"), "the example must stay committed"


# --------------------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def test_dockerfile_base_images_are_pinned_python_311_slim(dockerfile: list[tuple[str, str]]) -> None:
    stages: set[str] = set()
    bases = []
    for keyword, arguments in dockerfile:
        if keyword != "FROM":
            continue
        words = strip_flags(arguments).split()
        if words[0] not in stages:
            bases.append(words[0])
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    assert len(bases) >= 2, "expected a multi-stage build (build the wheel, then install it)"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base


def test_dockerfile_builds_a_wheel_and_installs_it_without_pip_cache(
    dockerfile: list[tuple[str, str]],
) -> None:
    runs = [arguments for keyword, arguments in dockerfile if keyword == "RUN"]
    assert any("pip wheel" in run for run in runs), "no stage builds wheels"
    installs = [run for keyword, run in final_stage(dockerfile) if keyword == "RUN" and "pip install" in run]
    assert installs, "the final stage installs nothing"
    assert all("--no-cache-dir" in run for run in installs), installs


def copy_sources(dockerfile: list[tuple[str, str]]) -> set[str]:
    """What the Dockerfile copies from the build context (not from other stages)."""
    sources: set[str] = set()
    for keyword, arguments in dockerfile:
        if keyword == "COPY" and "--from" not in arguments:
            sources.update(word.rstrip("/") for word in strip_flags(arguments).split()[:-1])
    return sources


def test_dockerfile_build_context_includes_readme_and_schemas(dockerfile: list[tuple[str, str]]) -> None:
    sources = copy_sources(dockerfile)
    assert {"pyproject.toml", "README.md", "schemas", "highlight"} <= sources, sources


def test_dockerfile_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage has no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"USER {users[-1]}"


def test_dockerfile_entrypoint_is_highlight_and_default_command_run(
    dockerfile: list[tuple[str, str]],
) -> None:
    stage = final_stage(dockerfile)
    entrypoints = [arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"]
    commands = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert entrypoints, "no ENTRYPOINT"
    assert commands, "no CMD"
    # Exec form (JSON) so the service is PID 1 and receives SIGTERM itself.
    assert json.loads(entrypoints[-1]) == ["highlight"]
    assert json.loads(commands[-1]) == ["run"]


def test_dockerfile_healthcheck_probes_healthz_on_the_metrics_port(dockerfile: list[tuple[str, str]]) -> None:
    checks = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    command = strip_flags(checks[-1])
    assert command.startswith("CMD "), f"HEALTHCHECK {command}"
    # Exec form must be valid JSON, or Docker silently runs the whole text through a shell.
    argv = json.loads(command.removeprefix("CMD ").strip())
    text = " ".join(argv)
    assert argv[0] == "python", "slim images have no curl: probe with the interpreter"
    assert "urllib" in text
    assert "/healthz" in text
    assert f"'{METRICS_PORT}'" in text or f":{METRICS_PORT}/" in text, f"probe is not on port {METRICS_PORT}"


def test_dockerfile_stops_on_sigterm_with_unbuffered_output(dockerfile: list[tuple[str, str]]) -> None:
    stage = final_stage(dockerfile)
    assert [arguments for keyword, arguments in stage if keyword == "STOPSIGNAL"] == ["SIGTERM"]
    envs = " ".join(arguments for keyword, arguments in stage if keyword == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", envs), "logs would sit in a buffer until exit"


def test_dockerignore_admits_what_the_dockerfile_copies(dockerfile: list[tuple[str, str]]) -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources(dockerfile)
    assert sources, "the Dockerfile copies nothing from the build context"
    for source in sorted(sources):
        # A directory is admitted when a file inside it is.
        path = f"{source}/module.py" if (ROOT / source).is_dir() else source
        assert not dockerignore_excludes(patterns, path), f".dockerignore drops {path}, which the build COPYs"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for path in (
        "deploy/live.env",
        ".git/config",
        ".venv/bin/python",
        "highlight/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignore_excludes(patterns, path), f".dockerignore lets {path} into the build context"


# --------------------------------------------------------------------------------------------------------
# Kubernetes example


def test_kubernetes_example_reads_the_live_key_from_a_secret(k8s_container: dict[str, Any]) -> None:
    env = {entry["name"]: entry for entry in k8s_container["env"]}
    key = env.get("HIGHLIGHT_LIVE_KEY")
    assert key, "HIGHLIGHT_LIVE_KEY is not set"
    assert "value" not in key, "the Live key is written into the manifest"
    assert key.get("valueFrom", {}).get("secretKeyRef", {}).get("name"), "HIGHLIGHT_LIVE_KEY is not a secretKeyRef"


def test_kubernetes_example_probes_healthz_and_readyz_on_the_metrics_port(
    k8s_container: dict[str, Any],
) -> None:
    ports = {port.get("name"): port["containerPort"] for port in k8s_container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = k8s_container.get(probe, {}).get("httpGet")
        assert http, f"no {probe}"
        assert http["path"] == path, f"{probe} probes {http['path']}"
        port = ports.get(http["port"], http["port"])
        assert str(port) == METRICS_PORT, f"{probe} probes port {port}"


@pytest.mark.parametrize("name", ["highlight-recorder", "highlight-callbacks"])
def test_kubernetes_example_startup_probe_outlasts_the_wait_for_kafka(
    kubernetes: list[dict[str, Any]], name: str
) -> None:
    # Nothing listens while start-up waits for the brokers: without a startup probe, liveness would restart a
    # pod that is waiting as designed.
    container = only_container(k8s_workload(kubernetes, name))
    probe = container.get("startupProbe", {})
    assert probe.get("httpGet", {}).get("path") == "/healthz", "no startup probe on /healthz"
    allowed = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    startup_wait = float(ENV_DEFAULTS["HIGHLIGHT_KAFKA_STARTUP_TIMEOUT_SECONDS"])
    # A minute past the wait: the state's restore comes after it, and a 1M-entry restore takes seconds.
    assert allowed >= startup_wait + 60, f"the startup probe gives up after {allowed} s"
    assert "initialDelaySeconds" not in container["livenessProbe"], "the startup probe holds liveness back"


def test_kubernetes_example_static_membership_uses_the_statefulset_pod_name(
    kubernetes: list[dict[str, Any]], k8s_container: dict[str, Any]
) -> None:
    assert any(doc["kind"] == "StatefulSet" for doc in kubernetes), "pod names are stable only in a StatefulSet"
    env = {entry["name"]: entry for entry in k8s_container["env"]}
    instance = env.get("HIGHLIGHT_GROUP_INSTANCE_ID", {})
    assert instance.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"


def test_kubernetes_example_grace_period_outlasts_the_drain(k8s_recorder: dict[str, Any]) -> None:
    pod = k8s_recorder["spec"]["template"]["spec"]
    assert pod.get("terminationGracePeriodSeconds", 30) > DRAIN_BOUND_SECONDS


@pytest.mark.parametrize("name", ["highlight-recorder", "highlight-callbacks"])
def test_kubernetes_example_runs_a_pinned_image_as_non_root(kubernetes: list[dict[str, Any]], name: str) -> None:
    pod = k8s_workload(kubernetes, name)["spec"]["template"]["spec"]
    assert pod.get("securityContext", {}).get("runAsNonRoot") is True
    image = pod["containers"][0]["image"]
    assert image_ref(image).tag not in (None, "latest"), f"unpinned image {image!r}"


def test_kubernetes_example_receiver_is_a_stateless_deployment_reading_its_key_from_a_secret(
    k8s_receiver: dict[str, Any],
) -> None:
    assert k8s_receiver["kind"] == "Deployment", "the receiver keeps no state: no stable pod names needed"
    assert k8s_receiver["spec"]["replicas"] >= 2, "one receiver down must not leave Live's re-sends unanswered"
    container = only_container(k8s_receiver)
    assert container["args"] == ["callbacks"]
    env = {entry["name"]: entry for entry in container["env"]}
    key = env.get("HIGHLIGHT_CALLBACK_KEY")
    assert key, "HIGHLIGHT_CALLBACK_KEY is not set"
    assert "value" not in key, "the callback key is written into the manifest"
    assert key.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
    assert "HIGHLIGHT_LIVE_KEY" not in env, "the receiver never needs the Live API key"


def test_kubernetes_example_receiver_serves_the_callback_port_and_probes_the_metrics_port(
    kubernetes: list[dict[str, Any]], k8s_receiver: dict[str, Any]
) -> None:
    container = only_container(k8s_receiver)
    ports = {port.get("name"): port["containerPort"] for port in container["ports"]}
    assert ports.get("callbacks") == 8090
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container.get(probe, {}).get("httpGet")
        assert http, f"no {probe}"
        assert http["path"] == path
        assert str(ports.get(http["port"], http["port"])) == METRICS_PORT
    (service,) = [
        doc for doc in kubernetes if doc["kind"] == "Service" and doc["metadata"]["name"] == "highlight-callbacks"
    ]
    assert service["spec"]["selector"] == k8s_receiver["spec"]["selector"]["matchLabels"]
    assert {port["targetPort"] for port in service["spec"]["ports"]} >= {"callbacks"}


# --------------------------------------------------------------------------------------------------------
# Monitoring: the compose profile, Prometheus and its alerting rules, Grafana and its dashboard

MONITORING_PROFILE = "monitoring"
MONITORING_SERVICES = {"prometheus", "grafana"}
DEFAULT_SERVICES = {"kafka", "topics-init", "live-sim", "recorder", "callbacks"}
SCRAPE_JOB = "highlight"
CALLBACKS_JOB = "highlight-callbacks"
PROMETHEUS_CONFIG_PATH = "/etc/prometheus/prometheus.yml"  # the image's default --config.file
PROMETHEUS_PORT = 9090  # the image's default --web.listen-address
GRAFANA_PROVISIONING_PATH = "/etc/grafana/provisioning"  # the image's GF_PATHS_PROVISIONING
# Labels Prometheus puts on every scraped series (job, instance) and the highlight job adds (service).
TARGET_LABELS = frozenset({"job", "instance", "service"})
# Series Prometheus makes itself, with their labels.
BUILTIN_SERIES = {"up": TARGET_LABELS, "ALERTS": frozenset({"alertname", "alertstate", "severity"})}
SEVERITIES = {"critical", "warning", "info"}
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
PROM_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
# Grafana's built-in variables, each with a stand-in PromQL accepts.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
# How prometheus_client exposes a family of each type: the suffixes of its series names.
EXPOSED_SUFFIXES = {
    "counter": ("_total",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
}

HIGHLIGHT_SERIES = re.compile(r"\bhighlight_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
JOB_MATCHER = re.compile(r'\bjob\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class Family:
    """A metric family as a scraper sees it."""

    name: str  # as documented: counters with `_total`, info with `_info`
    type: str
    series: frozenset[str]  # every series name it is exposed under
    labels: frozenset[str]
    values: dict[str, frozenset[str]]  # label values the registry creates up front


def metric_families(metrics: Metrics | ReceiverMetrics) -> dict[str, Family]:
    """Every family of the service's registry, collected through `registry.collect()`."""
    if isinstance(metrics, Metrics):
        # The lag is read at scrape time and has no series until a source is watched: give it one partition.
        metrics.watch_lag(lambda: [(ENV_DEFAULTS["HIGHLIGHT_MOMENTS_TOPIC"], 0, 0)])
    # A labelled metric with no child yet has no sample to read its label names from; prometheus_client
    # keeps them in `_labelnames`.
    declared = {
        wrapper.describe()[0].name: tuple(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    families: dict[str, Family] = {}
    for family in metrics.registry.collect():
        suffixes = EXPOSED_SUFFIXES.get(family.type, ("",))
        labels = set(declared.get(family.name, ()))
        values: dict[str, set[str]] = {}
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in {"le", "quantile"}:
                    labels.add(label)
                    values.setdefault(label, set()).add(value)
        name = family.name + suffixes[0] if family.type in {"counter", "info"} else family.name
        assert name not in families, f"metric {name} is registered twice"
        families[name] = Family(
            name=name,
            type=family.type,
            series=frozenset(family.name + suffix for suffix in suffixes),
            labels=frozenset(labels),
            values={label: frozenset(found) for label, found in values.items()},
        )
    return families


def promql_problems(expr: str, families: dict[str, Family], where: str) -> list[str]:
    """Series, label names and pre-created label values an expression uses that the service does not expose."""
    by_series = {series: family for family in families.values() for series in family.series}
    problems: list[str] = []
    used = set(HIGHLIGHT_SERIES.findall(expr))
    problems += [f"{where}: {name} is not exposed by highlight.metrics" for name in sorted(used - set(by_series))]
    # Labels a grouping may name: the target labels and those of every series the expression reads.
    groupable = set(TARGET_LABELS)
    for name in used & set(by_series):
        groupable |= by_series[name].labels | ({"le"} if name.endswith("_bucket") else set())
    for name, body in SELECTOR.findall(expr):
        family = by_series.get(name)
        if family is not None:
            known = family.labels | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
        elif name in BUILTIN_SERIES:
            known = BUILTIN_SERIES[name]
            groupable |= known
        else:
            if not name.startswith("highlight_"):  # an unknown highlight_ name is reported above
                problems.append(f"{where}: {name} is neither a highlight metric nor a Prometheus series")
            continue
        for label, operator, value in MATCHER.findall(body):
            if label not in known:
                problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(known)})")
                continue
            created = family.values.get(label) if family is not None else None
            # Against a label whose values the registry creates up front, a literal must be one of them.
            if created and operator in {"=", "=~", "!~"} and re.fullmatch(r"[\w|]+", value):
                for unknown in sorted(set(value.split("|")) - created):
                    problems.append(f'{where}: {name}{{{label}="{unknown}"}} never exists (values {sorted(created)})')
    for group in GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in groupable:
                problems.append(f"{where}: groups by {label!r}, which none of its series carries")
    return problems


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """Container path -> (host path, read-only) for every bind mount of a service."""
    mounts: dict[str, tuple[Path, bool]] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target, read_only = volume.get("source", ""), volume["target"], bool(volume.get("read_only"))
        else:
            source, target, *mode = str(volume).split(":")
            read_only = "ro" in ",".join(mode).split(",")
        if source.startswith((".", "/")):
            mounts[target] = ((ROOT / source).resolve(), read_only)
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of every published port, short syntax."""
    found = []
    for entry in service.get("ports") or []:
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"publish {entry!r} as [address:]host:container"
        address = parts[0] if len(parts) == 3 else ""
        found.append((address, int(parts[-2]), int(parts[-1])))
    return found


def recorder_services(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every service, commented real-endpoint one included, that runs `highlight run`."""
    image = services["recorder"]["image"]
    return {
        name: service
        for name, service in real_services.items()
        if service.get("image") == image and script_of(service).split()[:1] == ["run"]
    }


def readme_section(title: str) -> str:
    text = read(README)
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found += panel.get("panels", [])
    return found


def grafana_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target, with Grafana's variables replaced by values PromQL accepts."""
    variables = {f"${v['name']}": ".*" for v in dashboard.get("templating", {}).get("list", [])}
    found = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            for variable, stand_in in sorted({**GRAFANA_BUILTINS, **variables}.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(variable, stand_in)
            found.append((f"panel {panel.get('title')!r} target {target.get('refId')}", expr))
    return found


def alerting_rules(alerts: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alerts["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def families() -> dict[str, Family]:
    """The recorder's families and the receiver's; one family where both have it (the build info)."""
    found = metric_families(Metrics())
    assert found, "highlight.metrics.Metrics registers no metric"
    for name, family in metric_families(ReceiverMetrics()).items():
        same = found.get(name)
        if same is not None:
            assert (same.type, same.series) == (family.type, family.series), f"{name} differs between the two"
            values = {
                k: same.values.get(k, frozenset()) | family.values.get(k, frozenset())
                for k in {*same.values, *family.values}
            }
            family = Family(name, family.type, family.series, same.labels | family.labels, values)
        found[name] = family
    return found


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    config = yaml.safe_load(read(PROMETHEUS_CONFIG))
    assert isinstance(config, dict), f"{PROMETHEUS_CONFIG.name} is not a mapping"
    return config


@pytest.fixture(scope="module")
def scrape_job(prometheus_config: dict[str, Any]) -> dict[str, Any]:
    jobs = [job for job in prometheus_config.get("scrape_configs") or [] if job.get("job_name") == SCRAPE_JOB]
    assert len(jobs) == 1, f"expected one scrape job {SCRAPE_JOB!r}: dashboard and alerts select job={SCRAPE_JOB!r}"
    job: dict[str, Any] = jobs[0]
    return job


@pytest.fixture(scope="module")
def alerts() -> dict[str, Any]:
    document = yaml.safe_load(read(ALERTS))
    assert isinstance(document, dict), f"{ALERTS.name} is not a mapping"
    return document


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document = json.loads(read(DASHBOARD))
    assert isinstance(document, dict), f"{DASHBOARD.name} is not a JSON object"
    return document


def provisioning(kind: str) -> list[dict[str, Any]]:
    """The provisioning documents of one kind (datasources, dashboards)."""
    folder = GRAFANA_PROVISIONING / kind
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    assert files, f"no provisioning file in {folder.relative_to(ROOT)}"
    documents = [yaml.safe_load(read(path)) for path in files]
    for path, document in zip(files, documents, strict=True):
        assert document.get("apiVersion") == 1, f"{path.relative_to(ROOT)}: apiVersion must be 1"
    return documents


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    sources = [source for document in provisioning("datasources") for source in document.get("datasources", [])]
    assert len(sources) == 1, f"expected one provisioned datasource, found {len(sources)}"
    source: dict[str, Any] = sources[0]
    return source


def test_compose_monitoring_services_are_an_optional_profile(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]]
) -> None:
    for found in (services, real_services):
        profiled = {name: service["profiles"] for name, service in found.items() if service.get("profiles")}
        assert profiled == {name: [MONITORING_PROFILE] for name in MONITORING_SERVICES}, profiled
    assert set(services) - MONITORING_SERVICES == DEFAULT_SERVICES, "a plain `docker compose up` changed"
    for name, service in real_services.items():
        if name not in MONITORING_SERVICES:
            needs = set(service.get("depends_on") or {})
            assert not needs & MONITORING_SERVICES, f"{name} needs {needs & MONITORING_SERVICES}, off by default"


def test_compose_monitoring_images_are_pinned_releases(services: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana(-oss)?:1[12]\.\d+\.\d+", services["grafana"]["image"])


def test_readme_operations_names_the_monitoring_images(services: dict[str, dict[str, Any]]) -> None:
    section = readme_section("Operations")
    for name in sorted(MONITORING_SERVICES):
        image = services[name]["image"]
        assert image in section, f"README Operations does not say that {name} runs {image}"


def test_compose_publishes_ports_on_loopback_only(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]]
) -> None:
    """Kafka has no authentication, Grafana lets anonymous viewers in and Prometheus has no login: none of them
    belongs on a LAN address."""
    for name in sorted({"kafka", *MONITORING_SERVICES}):
        assert published_ports(services[name]), f"{name} publishes no port"
    for name, service in sorted(real_services.items()):
        for address, _, _ in published_ports(service):
            assert address in {"127.0.0.1", "[::1]"}, f"{name} is published on {address or 'every interface'}"


def test_compose_monitoring_bind_mounts_exist_and_are_read_only(services: dict[str, dict[str, Any]]) -> None:
    for name in sorted(MONITORING_SERVICES):
        mounts = bind_mounts(services[name])
        assert mounts, f"{name} mounts nothing from deploy/"
        for target, (source, read_only) in mounts.items():
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert source.is_relative_to(ROOT / "deploy"), f"{name} mounts {source} from outside deploy/"
            assert read_only, f"{name} mounts {target} writable"


def test_prometheus_scrapes_every_recorder_service_on_its_metrics_port(
    services: dict[str, dict[str, Any]], real_services: dict[str, dict[str, Any]], scrape_job: dict[str, Any]
) -> None:
    recorders = recorder_services(services, real_services)
    assert {"recorder", REAL_SERVICE} <= set(recorders), sorted(recorders)
    assert scrape_job.get("metrics_path", "/metrics") == "/metrics"
    assert scrape_job.get("scheme", "http") == "http"
    targets: dict[str, int] = {}
    for config in scrape_job.get("dns_sd_configs") or []:
        # A compose service name answers one A record per replica; compose has no SRV records.
        assert config.get("type", "SRV") == "A", f"dns_sd_configs {config['names']} must look up A records"
        for name in config["names"]:
            assert name not in targets, f"{name} is scraped twice"
            targets[name] = int(config["port"])
    for config in scrape_job.get("static_configs") or []:
        for target in config["targets"]:
            host, _, port = target.rpartition(":")
            assert host not in targets, f"{host} is scraped twice"
            targets[host] = int(port)
    assert set(targets) == set(recorders), f"scraped {sorted(targets)}, recorder services {sorted(recorders)}"
    for name, service in recorders.items():
        port = environment(service).get("HIGHLIGHT_METRICS_PORT", METRICS_PORT)
        assert targets[name] == int(port), f"{name} serves metrics on {port}, Prometheus scrapes {targets[name]}"
        exposed = {str(entry).split("/")[0] for entry in service.get("expose") or []}
        assert str(port) in exposed, f"{name} does not expose its metrics port {port}"


def test_prometheus_labels_each_target_with_its_compose_service(scrape_job: dict[str, Any]) -> None:
    relabels = scrape_job.get("relabel_configs") or []
    assert any(
        relabel.get("source_labels") == ["__meta_dns_name"] and relabel.get("target_label") == "service"
        for relabel in relabels
    ), "alerts and the README use a `service` label: relabel __meta_dns_name into it"


def test_prometheus_loads_its_config_and_rules_where_compose_mounts_them(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    prometheus = services["prometheus"]
    command = " ".join(str(arg) for arg in prometheus.get("command") or [])
    config_path = re.search(r"--config\.file[= ](\S+)", command)
    assert (config_path.group(1) if config_path else PROMETHEUS_CONFIG_PATH) == PROMETHEUS_CONFIG_PATH
    assert "--web.listen-address" not in command, "the Grafana datasource expects the default port"
    mounts = bind_mounts(prometheus)
    assert mounts.get(PROMETHEUS_CONFIG_PATH, (None,))[0] == PROMETHEUS_CONFIG.resolve()
    rule_files = prometheus_config.get("rule_files") or []
    assert [mounts.get(path, (None,))[0] for path in rule_files] == [ALERTS.resolve()], rule_files
    assert any(port == PROMETHEUS_PORT for _, _, port in published_ports(prometheus))


def test_prometheus_and_grafana_queries_select_the_scrape_job(
    alerts: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    texts = [rule["expr"] for rule in alerting_rules(alerts)] + [expr for _, expr in grafana_expressions(dashboard)]
    texts += [json.dumps(variable) for variable in dashboard.get("templating", {}).get("list", [])]
    jobs = {job for text in texts for job in JOB_MATCHER.findall(text)}
    scraped = {SCRAPE_JOB, CALLBACKS_JOB}
    assert jobs <= scraped, f"queries select job {sorted(jobs - scraped)}, scraped as {sorted(scraped)}"


def test_prometheus_scrapes_the_callback_receivers_as_their_own_job(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    jobs = [job for job in prometheus_config.get("scrape_configs") or [] if job.get("job_name") == CALLBACKS_JOB]
    assert len(jobs) == 1, f"expected one scrape job {CALLBACKS_JOB!r}"
    (config,) = jobs[0]["dns_sd_configs"]
    assert (config["names"], config.get("type")) == (["callbacks"], "A")
    port = environment(services["callbacks"]).get("HIGHLIGHT_METRICS_PORT", METRICS_PORT)
    assert int(config["port"]) == int(port)


def test_alerts_file_is_prometheus_rule_syntax(alerts: dict[str, Any]) -> None:
    assert set(alerts) == {"groups"}, f"top-level keys {sorted(alerts)}"
    groups = alerts["groups"]
    assert isinstance(groups, list), "groups is not a list"
    assert groups, "no rule groups"
    group_names = [group.get("name") for group in groups]
    assert all(group_names), f"a group has no name: {group_names}"
    assert len(set(group_names)) == len(group_names), f"group names repeat: {group_names}"
    names: list[str] = []
    for group in groups:
        assert set(group) <= {"name", "interval", "limit", "rules"}, f"group {group['name']} keys {sorted(group)}"
        assert isinstance(group.get("rules"), list), f"group {group['name']}: rules is not a list"
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            assert isinstance(rule, dict), f"not a rule: {rule}"
            assert "alert" in rule, f"not an alerting rule: {rule}"
            name = rule["alert"]
            names.append(name)
            assert set(rule) <= RULE_KEYS, f"{name}: unknown keys {sorted(set(rule) - RULE_KEYS)}"
            assert re.fullmatch(r"Highlight[A-Z][A-Za-z0-9]*", name), f"alert name {name!r}"
            expr = rule.get("expr")
            assert isinstance(expr, str), f"{name}: expr is not a string"
            assert expr.strip(), f"{name}: no expr"
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), f"{name}: unbalanced {opening}{closing}"
            assert PROM_DURATION.fullmatch(str(rule.get("for", ""))), f"{name}: for {rule.get('for')!r}"
            labels = rule.get("labels") or {}
            assert labels.get("severity") in SEVERITIES, f"{name}: severity {labels.get('severity')!r}"
            assert all(isinstance(value, str) for value in labels.values()), f"{name}: label values are strings"
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description"):
                assert str(annotations.get(key, "")).strip(), f"{name}: no {key} annotation"
    assert len(set(names)) == len(names), f"alert names repeat: {names}"


def test_alerts_use_only_metrics_and_labels_the_service_exposes(
    alerts: dict[str, Any], families: dict[str, Family]
) -> None:
    problems = []
    for rule in alerting_rules(alerts):
        problems += promql_problems(rule["expr"], families, rule["alert"])
    assert not problems, "\n".join(problems)


def test_grafana_datasource_is_the_compose_prometheus(
    services: dict[str, dict[str, Any]], datasource: dict[str, Any]
) -> None:
    assert datasource.get("type") == "prometheus"
    assert datasource.get("uid"), "the dashboard names its datasource by uid: give it a fixed one"
    assert datasource.get("access", "proxy") == "proxy", "browser access cannot resolve the compose name"
    url = urlsplit(datasource["url"])
    assert "prometheus" in services, "no prometheus service"
    assert url.hostname == "prometheus", f"datasource url {datasource['url']}"
    assert url.port == PROMETHEUS_PORT, f"datasource url {datasource['url']}"


def test_grafana_dashboard_provider_serves_the_mounted_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts.get(GRAFANA_PROVISIONING_PATH, (None,))[0] == GRAFANA_PROVISIONING.resolve()
    (dashboard_target,) = [target for target, (source, _) in mounts.items() if source == DASHBOARD.resolve()]
    providers = [provider for document in provisioning("dashboards") for provider in document.get("providers", [])]
    assert len(providers) == 1, f"expected one dashboard provider, found {len(providers)}"
    provider = providers[0]
    assert provider.get("type", "file") == "file"
    assert Path(provider["options"]["path"]) == Path(dashboard_target).parent, "the provider reads another folder"
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home in (None, dashboard_target), f"home dashboard {home} is not the mounted one"


def test_grafana_allows_anonymous_viewers_only_and_takes_the_admin_password_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["grafana"])
    if env.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() == "true":
        assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer", "anonymous visitors must not edit"
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(:?-[^}]*)?\}", password), (
        f"GF_SECURITY_ADMIN_PASSWORD={password!r}: take it from the environment, "
        "e.g. ${GRAFANA_ADMIN_PASSWORD:-admin}"
    )


def test_grafana_dashboard_is_valid_dashboard_json(dashboard: dict[str, Any], datasource: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(dashboard.get("uid", ""))), f"uid {dashboard.get('uid')!r}"
    assert str(dashboard.get("title", "")).strip(), "no title"
    assert isinstance(dashboard.get("schemaVersion"), int), "no schemaVersion"
    assert dashboard.get("id") is None, "a provisioned dashboard must not carry a database id"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    panels = panels_of(dashboard)
    assert panels, "no panels"
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(panel_id, int) for panel_id in ids), f"panel ids {ids}"
    assert len(set(ids)) == len(ids), f"panel ids repeat: {ids}"
    queried = 0
    for panel in panels:
        title = panel.get("title")
        assert str(title or "").strip(), f"panel {panel.get('id')} has no title"
        grid = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= set(grid), f"{title}: gridPos {grid}"
        assert grid["x"] >= 0, f"{title}: gridPos {grid}"
        assert grid["x"] + grid["w"] <= 24, f"{title}: gridPos {grid} leaves the 24 columns"
        if panel.get("type") == "row":
            continue
        queried += 1
        assert panel.get("datasource") == expected, f"{title}: datasource {panel.get('datasource')}"
        targets = panel.get("targets") or []
        assert targets, f"{title}: no targets"
        refs = [target.get("refId") for target in targets]
        assert all(refs), f"{title}: a target has no refId"
        assert len(set(refs)) == len(refs), f"{title}: refIds repeat: {refs}"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"{title} {target.get('refId')}: no expr"
            assert target.get("datasource", expected) == expected, f"{title}: target datasource {target}"
    assert queried, "no panel queries anything"
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable.get("datasource") == expected, f"variable {variable.get('name')}: another datasource"


def test_grafana_dashboard_uses_only_defined_variables(dashboard: dict[str, Any]) -> None:
    for where, expr in grafana_expressions(dashboard):
        assert "$" not in expr, f"{where}: undefined variable in {expr}"


def test_grafana_dashboard_uses_only_metrics_and_labels_the_service_exposes(
    dashboard: dict[str, Any], families: dict[str, Family]
) -> None:
    problems = []
    for where, expr in grafana_expressions(dashboard):
        problems += promql_problems(expr, families, where)
    assert not problems, "\n".join(problems)


def test_grafana_dashboard_shows_every_metric(dashboard: dict[str, Any], families: dict[str, Family]) -> None:
    used = {name for _, expr in grafana_expressions(dashboard) for name in HIGHLIGHT_SERIES.findall(expr)}
    missing = sorted(name for name, family in families.items() if not family.series & used)
    assert not missing, f"metrics no panel shows: {missing}"


def test_readme_operations_documents_every_metric(families: dict[str, Family]) -> None:
    section = readme_section("Operations")
    documented = set(re.findall(r"^\| `(highlight_[a-z0-9_]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(families), (
        f"undocumented: {sorted(set(families) - documented)}; gone: {sorted(documented - set(families))}"
    )


def test_readme_operations_explains_every_alert(alerts: dict[str, Any]) -> None:
    section = readme_section("Operations")
    explained = set(re.findall(r"^\| `(Highlight[A-Za-z0-9]+)`", section, flags=re.MULTILINE))
    names = {rule["alert"] for rule in alerting_rules(alerts)}
    assert explained == names, f"unexplained: {sorted(names - explained)}; gone: {sorted(explained - names)}"


# The real tools: promtool (Prometheus's own checker) and dclint (the Compose linter).


def promtool() -> str:
    return harness.tool("promtool", "apt-get install prometheus")


def test_promtool_accepts_the_alerting_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_prometheus_config(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    tool = promtool()
    mounts = bind_mounts(services["prometheus"])
    # Point the rule files at the repository's copies, as the container sees them through its mounts.
    config = {**prometheus_config, "rule_files": [str(mounts[path][0]) for path in prometheus_config["rule_files"]]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run([tool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_dashboard_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    tool = promtool()
    rules = [
        {"record": f"dashboard:query:{number}", "expr": expr}
        for number, (_, expr) in enumerate(grafana_expressions(dashboard))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


CI_NPM = ROOT / ".ci" / "npm"


def dclint_pin() -> str:
    """The dclint version .ci/run installs (npm ci from .ci/npm's lock): the one the compose file is kept clean for."""
    wanted = json.loads(read(CI_NPM / "package.json"))["devDependencies"]["dclint"]
    locked = json.loads(read(CI_NPM / "package-lock.json"))["packages"]["node_modules/dclint"]["version"]
    assert wanted == locked, f".ci/npm/package.json asks for dclint {wanted}, its lock holds {locked}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", wanted), f"dclint {wanted!r} is not pinned to one version"
    return str(wanted)


@pytest.fixture(scope="module")
def dclint() -> str:
    version = dclint_pin()
    found = harness.tool("dclint", "npm ci --prefix .ci/npm")
    done = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == version, f"{found} is dclint {done.stdout.strip()}; .ci/run pins {version}"
    return found


@pytest.fixture(scope="module")
def dclint_findings(dclint: str, compose_text: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """dclint's findings, one run (node takes a second or two to start) over the compose file as it is, with
    the real-endpoint block uncommented, and with the kafka port published on every interface as it once was."""
    folder = tmp_path_factory.mktemp("compose")
    unbound = re.sub(r'"[\d.]+:29092:29092"', '"29092:29092"', compose_text)
    variants = {"as-is": COMPOSE, "real-endpoint": folder / "real.yml", "unbound": folder / "unbound.yml"}
    variants["real-endpoint"].write_text(uncomment_real_endpoint(compose_text), encoding="utf-8")
    variants["unbound"].write_text(unbound, encoding="utf-8")
    # A file, not stdout: node exits before a pipe takes more than 64 KiB, and a file with many findings has more.
    output = folder / "report.json"
    done = subprocess.run(
        [dclint, "--config", str(DCLINT_CONFIG), "--formatter", "json", "--output-file", str(output)]
        + [str(path) for path in variants.values()],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert output.is_file(), f"dclint wrote no report: {done.stdout}{done.stderr}"
    reports = {Path(ROOT, report["filePath"]): report["messages"] for report in json.loads(read(output))}
    # Warnings count as findings too: the configured rules (key order, quoting) are kept at zero.
    return {
        name: [f"line {found['line']}: {found['type']} {found['rule']}: {found['message']}" for found in reports[path]]
        for name, path in variants.items()
    }


def test_dclint_accepts_the_compose_file(dclint_findings: dict[str, list[str]]) -> None:
    assert not dclint_findings["as-is"], "\n".join(dclint_findings["as-is"])


def test_dclint_accepts_the_compose_file_with_the_real_endpoint_uncommented(
    dclint_findings: dict[str, list[str]],
) -> None:
    assert not dclint_findings["real-endpoint"], "\n".join(dclint_findings["real-endpoint"])


def test_dclint_refuses_a_broker_published_on_every_interface(dclint_findings: dict[str, list[str]]) -> None:
    """The check can fail: the port binding this file once had is an error under the pinned dclint."""
    findings = dclint_findings["unbound"]
    assert len(findings) == 1, findings
    assert "error no-unbound-port-interfaces" in findings[0], findings
