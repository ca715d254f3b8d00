"""The value checks every config uses (apexjax.configs.check_*): a bool is no int or float,
floats are finite, and every message names the field as ``Class.field``.

The field lists come from the configs' own annotations, so a field added later is covered.
"""

import dataclasses
import math
import types
import typing

import numpy as np
import pytest

from apexjax import envs
from apexjax.configs import (
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    parse_overrides,
)
from apexjax.distributed import DistributedConfig
from apexjax.guidance import GuidanceConfig
from apexjax.loop import TrainConfig
from apexjax.planning.icem import ICEMConfig
from apexjax.policy import PolicyConfig

# every shipped task's config (importing a task module loads no model)
_TASK_CONFIGS = sorted({envs.config_class(n) for n in envs.names()}, key=lambda c: c.__name__)
CONFIGS = [GuidanceConfig, PolicyConfig, ICEMConfig, TrainConfig, DistributedConfig, *_TASK_CONFIGS]


def _fields_of(kind: type) -> list[tuple[type, str]]:
    """``(config class, field)`` for every field annotated ``kind`` or ``kind | None``."""
    out = []
    for cls in CONFIGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if tp is kind or (
                typing.get_origin(tp) in (typing.Union, types.UnionType)
                and kind in typing.get_args(tp)
            ):
                out.append((cls, f.name))
    return out


INT_FIELDS = _fields_of(int)
FLOAT_FIELDS = _fields_of(float)


def _ids(pairs):
    return [f"{c.__name__}.{f}" for c, f in pairs]


def test_every_config_has_typed_fields_to_check():
    assert {c for c, _ in INT_FIELDS} >= {GuidanceConfig, PolicyConfig, ICEMConfig, TrainConfig}
    assert {c for c, _ in FLOAT_FIELDS} >= {GuidanceConfig, PolicyConfig, ICEMConfig, TrainConfig}
    assert (DistributedConfig, "timeout_s") in INT_FIELDS
    assert any(c.__name__ == "DoorConfig" for c, _ in FLOAT_FIELDS)


@pytest.mark.parametrize(
    ("cls", "field"), INT_FIELDS + FLOAT_FIELDS, ids=_ids(INT_FIELDS + FLOAT_FIELDS)
)
@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_an_int_or_a_float(cls, field, value):
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    assert f"{cls.__name__}.{field}" in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(("cls", "field"), FLOAT_FIELDS, ids=_ids(FLOAT_FIELDS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_floats_must_be_finite(cls, field, value):
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    text = str(info.value)
    assert f"{cls.__name__}.{field}" in text and "finite" in text and repr(value) in text


@pytest.mark.parametrize(("cls", "field"), INT_FIELDS, ids=_ids(INT_FIELDS))
def test_ints_refuse_a_float(cls, field):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field}: expected an int"):
        cls(**{field: 2.5})


def test_the_reported_case_guidance_weight_true():
    with pytest.raises(ConfigError, match=r"GuidanceConfig\.weight: expected a float >= 0"):
        GuidanceConfig(weight=True)
    # the overrides parser reads "true" for a float field as an error too, naming the field
    with pytest.raises(ConfigError, match=r"GuidanceConfig\.weight"):
        parse_overrides(GuidanceConfig, ["weight=true"])


def test_numpy_scalars_are_numbers_and_ints_are_floats():
    assert GuidanceConfig(weight=np.float32(0.5), warmup_iterations=np.int64(2)).weight == 0.5
    assert ICEMConfig(population=np.int32(8), elites=2, beta=1).beta == 1
    with pytest.raises(ConfigError, match=r"ICEMConfig\.keep_elites: expected a bool"):
        ICEMConfig(keep_elites=1)
    with pytest.raises(ConfigError, match=r"GuidanceConfig\.weight"):
        GuidanceConfig(weight=np.bool_(True))


def test_check_helpers_name_the_field_and_what_is_allowed():
    cases = [
        (lambda: check_int("A.n", 0, ge=1), "A.n: expected an int >= 1, got 0"),
        (
            lambda: check_int("A.n", 9, ge=2, le=5, hint="why"),
            "A.n: expected an int in [2, 5] (why), got 9",
        ),
        (lambda: check_int("A.n", "3"), "A.n: expected an int, got '3'"),
        (lambda: check_float("A.x", 1.0, ge=0, lt=1), "A.x: expected a float in [0, 1), got 1.0"),
        (lambda: check_float("A.x", 0, gt=0), "A.x: expected a float > 0, got 0"),
        (lambda: check_float("A.x", 2.0, le=1), "A.x: expected a float <= 1, got 2.0"),
        (lambda: check_float("A.x", math.nan), "A.x: expected a finite float, got nan"),
        (
            lambda: check_float("A.x", 0.0, gt=0, none_ok=True),
            "A.x: expected a float > 0 or None, got 0.0",
        ),
        (lambda: check_bool("A.b", 1), "A.b: expected a bool, got 1"),
        (
            lambda: check_choice("A.c", "z", ("a", "b")),
            "A.c: 'z' is not allowed; choose one of ['a', 'b']",
        ),
        (
            lambda: check_choice("A.c", True, (1, 2)),
            "A.c: True is not allowed; choose one of [1, 2]",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == message
    assert check_int("A.n", None, none_ok=True) is None
    assert check_float("A.x", 3, ge=3) == 3 and check_choice("A.c", "b", ("a", "b")) == "b"
    assert check_bool("A.b", np.bool_(False)) == np.bool_(False)
    with pytest.raises(ConfigError, match=r"A\.c"):  # an array is compared without a TypeError
        check_choice("A.c", np.zeros(2), ("a",))


def test_choice_fields_list_what_is_allowed():
    for cls, field, value, allowed in [
        (GuidanceConfig, "mode", "adaptive", "'progress'"),
        (PolicyConfig, "activation", "tanh", "'relu'"),
        (ICEMConfig, "execute", "worst", "'best'"),
        (TrainConfig, "relabel", "both", "'batched'"),
        (TrainConfig, "backend", "warp", "'native'"),
    ]:
        with pytest.raises(ConfigError) as info:
            cls(**{field: value})
        text = str(info.value)
        assert f"{cls.__name__}.{field}" in text and repr(value) in text and allowed in text
