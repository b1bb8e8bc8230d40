"""Kafka security (highlight.kafka.client_options): settings into aiokafka keyword arguments, and the TLS context.

No broker: TLS is exercised with an in-memory handshake against a trustme server, and clients are only
constructed, never started.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiokafka
import pytest
import trustme
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives import serialization

from highlight import config, topics
from highlight.config import KafkaSettings
from highlight.errors import ConfigError
from highlight.kafka import ChangelogReader, GroupConsumer, Partition, Producer, RebalanceHandler, client_options
from highlight.lease import Lease

LIVE = {"HIGHLIGHT_LIVE_APPID": "1234", "HIGHLIGHT_LIVE_KEY": "live-key"}
SASL_KEYS = {"sasl_mechanism", "sasl_plain_username", "sasl_plain_password"}
# A dict, not keyword arguments: `sasl_password="pw"` reads as a hard-coded password to ruff.
ALICE = {"sasl_username": "alice", "sasl_password": "pw"}


def _kafka(**env: str) -> KafkaSettings:
    return config.load({**LIVE, **{f"HIGHLIGHT_KAFKA_{name.upper()}": value for name, value in env.items()}}).kafka


class Pki:
    """A CA, a broker certificate for `localhost` and a client certificate, written as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("localhost")
        self.client = self.ca.issue_cert("highlight-client.example")
        self.cafile = str(directory / "ca.pem")
        self.certfile = str(directory / "client.crt")
        self.keyfile = str(directory / "client.key")
        self.combined = str(directory / "client-with-key.pem")
        self.encrypted_keyfile = str(directory / "client-encrypted.key")
        self.ca.cert_pem.write_to_path(self.cafile)
        self.client.cert_chain_pems[0].write_to_path(self.certfile)
        self.client.private_key_pem.write_to_path(self.keyfile)
        self.client.private_key_and_cert_chain_pem.write_to_path(self.combined)
        key = serialization.load_pem_private_key(self.client.private_key_pem.bytes(), password=None)
        Path(self.encrypted_keyfile).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"key-pw"),
            )
        )

    def broker_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _handshake(client: ssl.SSLContext, broker: ssl.SSLContext, hostname: str = "localhost") -> ssl.SSLObject:
    """Run a TLS handshake in memory; the broker's side, to see what the client presented."""
    to_broker, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(to_client, to_broker, server_hostname=hostname)
    broker_in, broker_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    broker_side = broker.wrap_bio(broker_in, broker_out, server_side=True)
    done = {"client": False, "broker": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("broker", broker_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        broker_in.write(to_broker.read())
        to_client.write(broker_out.read())
        # The broker finishes last (it judges the client certificate on the client's final flight), so a
        # refused client certificate surfaces here as the broker's error.
        if all(done.values()):
            return broker_side
    raise AssertionError("handshake did not finish")


# --- the mapping ----------------------------------------------------------------------------------


def test_plaintext_gives_only_the_protocol() -> None:
    assert client_options(_kafka()) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_passes_the_credentials_under_aiokafkas_names(mechanism: str) -> None:
    settings = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism, **ALICE)
    # aiokafka reads sasl_plain_username/_password for SCRAM as well as for PLAIN.
    assert client_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice",
        "sasl_plain_password": "pw",
    }


def test_sasl_ssl_scram_sha_512_passes_credentials_and_a_tls_context(pki: Pki) -> None:
    settings = _kafka(
        security_protocol="sasl_ssl",
        sasl_mechanism="scram-sha-512",
        **ALICE,
        ssl_cafile=pki.cafile,
    )
    options = client_options(settings)
    assert set(options) == {"security_protocol", "ssl_context", *SASL_KEYS}
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "alice",
        "pw",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_ssl_with_ca_cert_and_key_gives_a_tls_context_and_no_sasl(pki: Pki) -> None:
    settings = _kafka(
        security_protocol="SSL", ssl_cafile=pki.cafile, ssl_certfile=pki.certfile, ssl_keyfile=pki.keyfile
    )
    options = client_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"


def test_each_call_reads_the_files_into_a_fresh_context(pki: Pki) -> None:
    settings = _kafka(security_protocol="SSL", ssl_cafile=pki.cafile)
    assert client_options(settings)["ssl_context"] is not client_options(settings)["ssl_context"]


# --- the TLS context ------------------------------------------------------------------------------


def test_the_context_verifies_the_broker_and_its_hostname(pki: Pki) -> None:
    context: ssl.SSLContext = client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_the_given_ca_is_loaded_and_trusted(pki: Pki) -> None:
    context: ssl.SSLContext = client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile))["ssl_context"]
    # get_ca_certs() lists what was loaded from files, not the lazily found system store: just our CA.
    certs = context.get_ca_certs()
    assert len(certs) == 1
    assert "trustme" in repr(certs[0]["subject"])
    _handshake(context, pki.broker_context(require_client_cert=False))


def test_without_a_cafile_the_system_cas_do_not_trust_a_private_ca(pki: Pki) -> None:
    context: ssl.SSLContext = client_options(_kafka(security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, pki.broker_context(require_client_cert=False))


def test_a_broker_certificate_for_another_host_is_refused(pki: Pki) -> None:
    context: ssl.SSLContext = client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile))["ssl_context"]
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(context, pki.broker_context(require_client_cert=False), hostname="kafka.example.com")


@pytest.mark.parametrize("layout", ["separate", "combined", "encrypted"])
def test_the_client_certificate_and_key_are_presented_to_the_broker(pki: Pki, layout: str) -> None:
    files = {
        "separate": {"ssl_certfile": pki.certfile, "ssl_keyfile": pki.keyfile},
        "combined": {"ssl_certfile": pki.combined},
        "encrypted": {"ssl_certfile": pki.certfile, "ssl_keyfile": pki.encrypted_keyfile, "ssl_key_password": "key-pw"},
    }[layout]
    context = client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile, **files))["ssl_context"]
    broker_side = _handshake(context, pki.broker_context())
    peer = broker_side.getpeercert()
    assert peer is not None
    assert ("DNS", "highlight-client.example") in peer["subjectAltName"]


def test_without_a_client_certificate_a_broker_requiring_one_refuses(pki: Pki) -> None:
    context = client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile))["ssl_context"]
    with pytest.raises(ssl.SSLError):
        _handshake(context, pki.broker_context())


@pytest.mark.parametrize("password", [None, "wrong"])
def test_an_encrypted_key_without_its_password_is_a_config_error_not_a_prompt(pki: Pki, password: str | None) -> None:
    env = {"ssl_certfile": pki.certfile, "ssl_keyfile": pki.encrypted_keyfile}
    if password is not None:
        env["ssl_key_password"] = password
    with pytest.raises(ConfigError, match="HIGHLIGHT_KAFKA_SSL_") as caught:
        client_options(_kafka(security_protocol="SSL", ssl_cafile=pki.cafile, **env))
    assert "key-pw" not in str(caught.value)
    assert "wrong" not in str(caught.value)


def test_a_file_that_is_not_pem_is_a_config_error(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="HIGHLIGHT_KAFKA_SSL_CAFILE"):
        client_options(_kafka(security_protocol="SSL", ssl_cafile=str(garbage)))


# --- the clients accept the options ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="plaintext"),
        pytest.param({"security_protocol": "SSL", "ssl_cafile": "{ca}"}, id="ssl"),
        pytest.param(
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            id="sasl-plaintext",
        ),
        pytest.param(
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "u",
                "sasl_password": "p",
                "ssl_cafile": "{ca}",
                "ssl_certfile": "{cert}",
                "ssl_keyfile": "{key}",
            },
            id="sasl-ssl-mutual",
        ),
    ],
)
async def test_aiokafka_clients_accept_the_options(pki: Pki, env: dict[str, str]) -> None:
    files = {"{ca}": pki.cafile, "{cert}": pki.certfile, "{key}": pki.keyfile}
    settings = _kafka(**{name: files.get(value, value) for name, value in env.items()})
    options = client_options(settings)
    # Constructed only: start() would connect.
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers="localhost:9", **options)
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="localhost:9", group_id="g", **options)
    admin = AIOKafkaAdminClient(bootstrap_servers="localhost:9", **options)
    await producer.stop()
    await consumer.stop()
    await admin.close()


class _Recorded:
    """Stands in for an aiokafka client: keeps the keyword arguments, refuses to start."""

    made: list[dict[str, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).made.append(kwargs)

    async def start(self) -> None:
        raise _NotStarting

    async def close(self) -> None:
        pass


class _NotStarting(Exception):
    pass


async def test_every_client_kafka_py_builds_gets_the_security_options(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(_Recorded, "made", made, raising=False)
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", _Recorded)
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", _Recorded)
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", _Recorded)
    settings = _kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        **ALICE,
        ssl_cafile=pki.cafile,
    )
    Producer(settings)
    GroupConsumer(settings, ["topic"], RebalanceHandler(), Lease(6.0))
    ChangelogReader(settings)
    with pytest.raises(_NotStarting):
        await topics.prepare_topics(settings)
    assert len(made) == 4
    for kwargs in made:
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
            "SCRAM-SHA-512",
            "alice",
            "pw",
        )
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


# --- the high-water mark --------------------------------------------------------------------------


async def test_highwater_is_none_until_known_and_for_partitions_not_assigned() -> None:
    consumer = GroupConsumer(_kafka(), ["topic"], RebalanceHandler(), Lease(6.0))
    raw = consumer._consumer
    try:
        assert consumer.highwater(Partition("topic", 0)) is None
        raw.assign([aiokafka.TopicPartition("topic", 0)])
        assert consumer.highwater(Partition("topic", 0)) is None
        assert consumer.highwater(Partition("topic", 1)) is None
        # What a fetch response records; reached through aiokafka's internals, since no broker runs here.
        state = raw._subscription.subscription.assignment.state_value(aiokafka.TopicPartition("topic", 0))
        state.highwater = 42
        assert consumer.highwater(Partition("topic", 0)) == 42
    finally:
        await raw.stop()
