"""Configuration, built once: environment, then the command's `--flags` on top, into frozen dataclasses.

Nothing else in the package reads `os.environ`. Each setting is declared once, in `table`; the CLI builds its
flags and `--help` from the same table, so a name cannot drift between the two. Each command reads only its own
settings (`load` for `highlight run`, `load_receiver` for `highlight callbacks`): the receiver neither asks for
the Live API's credentials nor trips over them.
"""

from highlight.budget import Limits
from highlight.config.load import load, load_receiver
from highlight.config.setting import (
    CALLBACKS,
    DEFAULT_LIVE_URLS,
    KAFKA_SASL_MECHANISMS,
    KAFKA_SECURITY_PROTOCOLS,
    LIVE_APIS,
    MAX_MOMENT_BYTES_LIMIT,
    RUN,
    Setting,
)
from highlight.config.settings import (
    CallbackSettings,
    KafkaSettings,
    LiveSettings,
    ReceiverSettings,
    RecorderSettings,
    Secret,
    Settings,
)
from highlight.config.table import ENV_DEFAULTS, SETTINGS, add_arguments, settings_of

__all__ = [
    "CALLBACKS",
    "DEFAULT_LIVE_URLS",
    "ENV_DEFAULTS",
    "KAFKA_SASL_MECHANISMS",
    "KAFKA_SECURITY_PROTOCOLS",
    "LIVE_APIS",
    "MAX_MOMENT_BYTES_LIMIT",
    "RUN",
    "SETTINGS",
    "CallbackSettings",
    "KafkaSettings",
    "Limits",
    "LiveSettings",
    "ReceiverSettings",
    "RecorderSettings",
    "Secret",
    "Setting",
    "Settings",
    "add_arguments",
    "load",
    "load_receiver",
    "settings_of",
]
