"""The published JSON Schemas, compiled once.

`schemas/` at the top of the repository is the contract other teams read; a wheel carries a copy inside the
package, a source checkout reads the original.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

MOMENT_SCHEMA = "highlight-moment.schema.json"
RESULT_SCHEMA = "recording-result.schema.json"
CLIP_SCHEMA = "recording-clip.schema.json"

_PACKAGE_DIR = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    for directory in (_PACKAGE_DIR / "schemas", _PACKAGE_DIR.parent / "schemas"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"schema {name} is missing from the installation")


@cache
def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(schema_path(name).read_bytes())
    return document


@cache
def validator(name: str) -> Callable[[Any], Any]:
    compiled: Callable[[Any], Any] = fastjsonschema.compile(load(name))
    return compiled


ValidationError = fastjsonschema.JsonSchemaValueException
