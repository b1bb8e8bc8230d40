"""Checks across settings, made on the parsed values before they become frozen dataclasses.

Each setting's own parser has already refused a bad value; these refuse combinations that a library would reject
later, or would quietly ignore. An ignored TLS or SASL setting is the dangerous kind: the operator believes the
connection is secured or pinned, and it is not. Each message names every setting involved and the ways out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from highlight.config.setting import KAFKA_SASL_MECHANISMS
from highlight.errors import ConfigError

_SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def _env(attr: str) -> str:
    return "HIGHLIGHT_" + attr.upper()


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ignored(given: list[str], protocol: str, lacks: str, instead: str) -> ConfigError:
    one = len(given) == 1
    return ConfigError(
        f"{_names(given)} {'is' if one else 'are'} set but HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={protocol} does not "
        f"use {lacks}, so {'it' if one else 'they'} would be ignored; set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={instead}, "
        f"or unset {'it' if one else 'them'}"
    )


def check_kafka_security(values: Mapping[str, Any]) -> None:
    """Refuse Kafka security settings aiokafka would reject later, or would quietly ignore (and so not secure)."""
    protocol: str = values["kafka_security_protocol"]
    sasl = {_env(attr): values[attr] for attr in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")}
    if protocol in _SASL_PROTOCOLS:
        missing = [name for name, value in sasl.items() if value is None]
        if missing:
            mechanisms = "|".join(KAFKA_SASL_MECHANISMS)
            labels = [f"{name} ({mechanisms})" if name.endswith("_MECHANISM") else name for name in missing]
            without = "SSL" if protocol == "SASL_SSL" else "PLAINTEXT"
            raise ConfigError(
                f"HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={protocol} needs {_names(labels)}; "
                f"set {'it' if len(missing) == 1 else 'them'}, "
                f"or set HIGHLIGHT_KAFKA_SECURITY_PROTOCOL={without} to connect without SASL"
            )
    else:
        given = [name for name, value in sasl.items() if value is not None]
        if given:
            raise _ignored(given, protocol, "SASL", "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT or SASL_SSL")
    tls = {
        _env(attr): values[attr]
        for attr in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_ssl_key_password")
    }
    given = [name for name, value in tls.items() if value is not None]
    if given and protocol not in _TLS_PROTOCOLS:
        raise _ignored(given, protocol, "TLS", "SASL_SSL" if protocol == "SASL_PLAINTEXT" else "SSL")
    if values["kafka_ssl_keyfile"] is not None and values["kafka_ssl_certfile"] is None:
        raise ConfigError(
            "HIGHLIGHT_KAFKA_SSL_KEYFILE is set without HIGHLIGHT_KAFKA_SSL_CERTFILE; set "
            "HIGHLIGHT_KAFKA_SSL_CERTFILE to the client certificate of that key, or unset HIGHLIGHT_KAFKA_SSL_KEYFILE"
        )
    if values["kafka_ssl_key_password"] is not None and values["kafka_ssl_certfile"] is None:
        raise ConfigError(
            "HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD is set without HIGHLIGHT_KAFKA_SSL_CERTFILE or "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE, so there is no key to unlock; set HIGHLIGHT_KAFKA_SSL_CERTFILE (and "
            "HIGHLIGHT_KAFKA_SSL_KEYFILE if the key is separate), or unset HIGHLIGHT_KAFKA_SSL_KEY_PASSWORD"
        )


def check_live_tls(values: Mapping[str, Any], url: str) -> None:
    """Refuse a Live CA bundle that would never be read: certificates are not verified, or not used at all."""
    if values["live_ca_file"] is None:
        return
    if not values["live_tls_verify"]:
        raise ConfigError(
            "HIGHLIGHT_LIVE_CA_FILE is set but HIGHLIGHT_LIVE_TLS_VERIFY=false verifies no certificate, so it would "
            "be ignored; set HIGHLIGHT_LIVE_TLS_VERIFY=true to verify against it, or unset HIGHLIGHT_LIVE_CA_FILE"
        )
    if not url.lower().startswith("https://"):
        raise ConfigError(
            f"HIGHLIGHT_LIVE_CA_FILE is set but the Live URL {url} is not https, so it would be ignored; set "
            "HIGHLIGHT_LIVE_URL to the https endpoint, or unset HIGHLIGHT_LIVE_CA_FILE"
        )
