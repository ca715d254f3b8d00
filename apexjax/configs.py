"""Config helpers shared by the library and the CLI: overrides from ``key=value`` strings."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "build_checked",
    "parse_override_values",
    "parse_overrides",
    "replace_checked",
    "to_dict",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _coerce(owner: str, name: str, tp: Any, text: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if tp is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
        if origin is typing.Literal:
            if text not in [str(a) for a in args]:
                raise ConfigError(
                    f"{owner}.{name}: {text!r} is not allowed; choose one of {list(args)}"
                )
            return type(args[0])(text)
        if origin in (tuple, list):
            value = json.loads(text) if text.strip().startswith("[") else text.split(",")
            inner = args[0] if args else str
            return tuple(_coerce(owner, name, inner, str(v)) for v in value)
        if origin in (typing.Union, types.UnionType):
            if text.lower() == "none" and type(None) in args:
                return None
            for a in args:
                if a is type(None):
                    continue
                try:
                    return _coerce(owner, name, a, text)
                except (ValueError, ConfigError):
                    continue
            raise ValueError
    except ConfigError:
        raise
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"{owner}.{name}: cannot read {text!r} as {tp}") from None
    return json.loads(text)


def parse_override_values(cls: type, items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings -> ``{field: typed value}`` for dataclass ``cls`` (no build).

    Raises:
      ConfigError: malformed item, unknown field (the message lists the allowed ones),
        or a value of the wrong type.
    """
    types_ = _field_types(cls)
    owner = cls.__name__
    values: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{owner}: override {item!r} must look like field=value")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in types_:
            raise ConfigError(
                f"{owner}: unknown field {key!r}; allowed: {', '.join(sorted(types_))}"
            )
        values[key] = _coerce(owner, key, types_[key], text)
    return values


def build_checked(base: T, values: dict[str, Any]) -> T:
    """``dataclasses.replace(base, **values)``, its validation errors as :class:`ConfigError`."""
    try:
        return dataclasses.replace(base, **values)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None


def parse_overrides(cls: type[T], items: Iterable[str], base: T | None = None) -> T:
    """Builds ``cls`` (a frozen dataclass) from ``key=value`` strings, over ``base`` if given.

    Raises:
      ConfigError: malformed item, unknown field (the message lists the allowed ones),
        or a value of the wrong type; the dataclass's own validation runs after.
    """
    values = parse_override_values(cls, items)
    if base is not None:
        return build_checked(base, values)
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None


def replace_checked(config: T, **changes: Any) -> T:
    """``dataclasses.replace`` that names the config and the allowed fields on a typo."""
    allowed = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ConfigError(
            f"{type(config).__name__}: unknown field(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    return dataclasses.replace(config, **changes)


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a (possibly nested) dataclass config."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif hasattr(v, "tolist"):
            v = v.tolist()
        out[f.name] = v
    return out
