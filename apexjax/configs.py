"""Config helpers shared by the library and the CLI: overrides from ``key=value`` strings,
and the value checks every config's ``__post_init__`` uses (:func:`check_int`,
:func:`check_float`, :func:`check_bool`, :func:`check_choice`).

The checks are strict about types: a ``bool`` is neither an int nor a float (``True`` is an
``int`` subclass in Python, but a config field that takes a count or a weight never means a
bool), and a float must be finite. Their messages name the field as ``Class.field``, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "apply_overrides",
    "build_checked",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "is_int",
    "is_real",
    "parse_override_values",
    "parse_overrides",
    "replace_checked",
    "to_dict",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


def _bounds(ge: Any, gt: Any, le: Any, lt: Any) -> str:
    """`` >= 0``, `` in [0, 1)`` etc.: the allowed range as words ('' if unbounded)."""
    low = (f"[{ge}" if ge is not None else f"({gt}") if (ge is not None or gt is not None) else ""
    high = (f"{le}]" if le is not None else f"{lt})") if (le is not None or lt is not None) else ""
    if low and high:
        return f" in {low}, {high}"
    if low:
        return f" >= {ge}" if ge is not None else f" > {gt}"
    if high:
        return f" <= {le}" if le is not None else f" < {lt}"
    return ""


def _in_range(value: Any, ge: Any, gt: Any, le: Any, lt: Any) -> bool:
    return not (
        (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
        or (lt is not None and value >= lt)
    )


def _fail(name: str, what: str, value: Any, hint: str | None, none_ok: bool) -> typing.NoReturn:
    extra = f" ({hint})" if hint else ""
    alt = " or None" if none_ok else ""
    raise ConfigError(f"{name}: expected {what}{extra}{alt}, got {value!r}")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (int or float, Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_bool(value: Any) -> bool:
    # NumPy's bool (``np.bool_``) is no ``bool`` subclass; known by its type's name here, so
    # that this module does not import NumPy (the command line imports it at start-up).
    return isinstance(value, bool) or (
        type(value).__name__ in ("bool", "bool_") and type(value).__module__ == "numpy"
    )


def check_int(
    name: str,
    value: Any,
    *,
    ge: int | None = None,
    le: int | None = None,
    hint: str | None = None,
    none_ok: bool = False,
) -> Any:
    """``value`` unchanged if it is an int (not a bool) in ``[ge, le]``, else a ConfigError.

    Args:
      name: the field as ``Class.field`` (the message starts with it).
      value: the value to check.
      ge, le: inclusive bounds (``None``: unbounded).
      hint: why the bounds are what they are, added to the message in parentheses.
      none_ok: ``None`` is allowed too.

    Raises:
      ConfigError: ``"Class.field: expected an int >= 1, got 0"`` and the like.
    """
    if value is None and none_ok:
        return value
    if not is_int(value) or not _in_range(value, ge, None, le, None):
        _fail(name, "an int" + _bounds(ge, None, le, None), value, hint, none_ok)
    return value


def check_float(
    name: str,
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    hint: str | None = None,
    none_ok: bool = False,
) -> Any:
    """``value`` unchanged if it is a finite real number (an int or a float, not a bool) in
    the range the bounds give, else a ConfigError.

    Args:
      name: the field as ``Class.field`` (the message starts with it).
      value: the value to check; NaN and infinities are refused.
      ge, gt, le, lt: ``>=``, ``>``, ``<=``, ``<`` bounds (``None``: unbounded).
      hint: why the bounds are what they are, added to the message in parentheses.
      none_ok: ``None`` is allowed too.

    Raises:
      ConfigError: ``"Class.field: expected a float > 0, got 'x'"``; for NaN or an
        infinity ``"expected a finite float ..."``.
    """
    if value is None and none_ok:
        return value
    bounds = _bounds(ge, gt, le, lt)
    if not is_real(value):
        _fail(name, "a float" + bounds, value, hint, none_ok)
    if not math.isfinite(value):
        _fail(name, "a finite float" + bounds, value, hint, none_ok)
    if not _in_range(value, ge, gt, le, lt):
        _fail(name, "a float" + bounds, value, hint, none_ok)
    return value


def check_bool(name: str, value: Any) -> Any:
    """``value`` unchanged if it is a bool (Python or NumPy), else a ConfigError."""
    if not _is_bool(value):
        _fail(name, "a bool", value, None, False)
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` unchanged if it is one of ``choices``, else a ConfigError that lists them.

    A bool never matches an int choice (``True == 1`` in Python).
    """
    allowed = list(choices)

    def same(c: Any) -> bool:
        try:
            return bool(value == c) and _is_bool(value) == _is_bool(c)
        except (TypeError, ValueError):  # e.g. an array compared with a string
            return False

    if not any(same(c) for c in allowed):
        raise ConfigError(f"{name}: {value!r} is not allowed; choose one of {allowed}")
    return value


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


def _split_items(owner: str, items: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"{owner}: override {item!r} must look like field=value")
        key, text = item.split("=", 1)
        out[key.strip().replace("-", "_")] = text
    return out


def apply_overrides(config: T, overrides: Mapping[str, Any] | Iterable[str]) -> T:
    """``config`` (a frozen dataclass whose dataclass-valued fields are groups, such as
    :class:`~apexjax.loop.TrainConfig`'s ``planner``) with ``overrides`` applied in one
    validated build: the one override parser of the library, the command line's ``--set``
    and the presets.

    ``overrides`` is either a mapping of typed values by dotted key
    (``{"planner.population": 40}``) or ``"key=value"`` strings
    (``["planner.population=40"]``), read against the field's type (bool as
    1/true/yes/on or 0/false/no/off, tuples as JSON lists or comma-separated). Later keys
    win. Sub-configs are replaced first, then the whole config is built once, so checks
    across groups see every override at once.

    Raises:
      ConfigError: a malformed item, an unknown group or field (the message lists the
        allowed ones), or a value the config rejects.
    """
    owner = type(config).__name__
    text = not isinstance(overrides, Mapping)
    items: Mapping[str, Any] = _split_items(owner, overrides) if text else overrides  # type: ignore[arg-type]
    groups = {
        f.name
        for f in dataclasses.fields(config)
        if dataclasses.is_dataclass(getattr(config, f.name))
    }
    top: dict[str, Any] = {}
    sub: dict[str, dict[str, Any]] = {}
    for key, v in items.items():
        target, field, where = config, key, top
        if "." in key:
            group, field = key.split(".", 1)
            if group not in groups:
                raise ConfigError(
                    f"{owner}: unknown group {group!r} in {key!r}; allowed: {sorted(groups)}"
                )
            target, where = getattr(config, group), sub.setdefault(group, {})
        types_ = _field_types(type(target))
        if field not in types_:
            raise ConfigError(
                f"{type(target).__name__}: unknown field {field!r}; allowed: "
                f"{', '.join(sorted(types_))}"
            )
        where[field] = _coerce(type(target).__name__, field, types_[field], v) if text else v
    for group, part in sub.items():
        top[group] = _replace_as_config_error(getattr(config, group), part)
    return _replace_as_config_error(config, top)


def _replace_as_config_error(config: T, changes: dict[str, Any]) -> T:
    try:
        return replace_checked(config, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{type(config).__name__}: {e}") from None
