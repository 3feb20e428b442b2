"""Reading TOML tables and environment values into typed dataclasses, with errors that name the
file and key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from service.errors import ConfigError

T = TypeVar("T")


def from_table(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    return cls(**checked_fields(cls, table, where))


def checked_fields(
    cls: type, table: Mapping[str, Any], where: str, skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)} - set(skip)
    reject_unknown(table, allowed, where)
    values = {}
    for key, value in table.items():
        expected = field_type(cls, key)
        values[key] = coerce(value, expected, f"{where} {key}")
    return values


def field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def coerce(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        if not isinstance(value, list | tuple) or not all(isinstance(v, item_type) for v in value):
            raise ConfigError(f"{where}: expected a list of {item_type.__name__}")
        return tuple(value)
    if isinstance(expected, type) and not isinstance(expected, types.GenericAlias):
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
            )
    return value


def parse_env(name: str, raw: str, expected: Any) -> Any:
    try:
        if expected is int:
            return int(raw)
        if expected is float:
            return float(raw)
        if expected is Path:
            return Path(raw)
        if typing.get_origin(expected) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"LOOPSERVE_{name.upper()}={raw!r}: {exc}") from exc
    return raw


def reject_unknown(
    table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str
) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")
