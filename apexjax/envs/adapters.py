"""Adapters: any Brax ``Env`` or MuJoCo Playground ``MjxEnv`` as an apexjax :class:`Task`.

Both libraries share one state shape (``obs``, ``reward``, ``done``, ``metrics``,
``info`` and the physics state: ``pipeline_state`` in Brax, ``data`` in Playground),
so one class wraps both. The wrapped env's own state lives in ``State.data``;
copying an apexjax state copies it (it is a pytree, including Playground's ``rng``).

Conventions of the adapted task:

- cost ``c(s, a, s') = -s'.data.reward`` unless a ``cost_fn(state, action,
  next_state)`` is given (states are apexjax :class:`State` s).
- observation: the env's ``obs``; a dict observation uses its ``"state"`` entry when
  present, otherwise every leaf flattened and concatenated in sorted-key order.
- actions: both libraries' envs take actions in ``[-1, 1]`` (Brax scales them to the
  actuator range or uses actuators whose range is ``[-1, 1]``; Playground writes them to
  ``ctrl`` of models whose range is ``[-1, 1]``), so the bounds default to that;
  ``action_bounds=(low, high)`` overrides them. Actions are clipped to the bounds.
- ``done`` of the wrapped env is ignored: the planner keeps stepping (encode a
  termination penalty in ``cost_fn`` if wanted).
- success is False unless a ``success_fn(state)`` is given.

Brax and Playground are imported only by :func:`make_brax` / :func:`make_playground`,
never by importing apexjax.

Playground's locomotion and manipulation envs load their robots from a MuJoCo Menagerie
checkout, which Playground clones with ``git`` the first time one is built; where that is
not possible (no network, no git) :func:`make_playground` raises
:class:`MenagerieNotFoundError`, which says where Playground looks for the checkout.
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from apexjax.configs import ConfigError
from apexjax.envs.base import State, Task, tree_is_finite

__all__ = [
    "CostFn",
    "EnvTask",
    "MenagerieNotFoundError",
    "SuccessFn",
    "from_brax",
    "from_playground",
    "make_brax",
    "make_playground",
]

CostFn = Callable[[State, jax.Array, State], jax.Array]
SuccessFn = Callable[[State], jax.Array]

#: Brax envs are "unlimited" in time; this is the episode length when none is given.
BRAX_EPISODE_LENGTH = 1000

MENAGERIE_URL = "https://github.com/deepmind/mujoco_menagerie.git"


class MenagerieNotFoundError(ConfigError):
    """A Playground env needs a MuJoCo Menagerie checkout that is missing (Playground's own
    download failed) or incomplete; the message says where Playground looks for it and how
    to provide it."""


def flatten_observation(obs: Any) -> jax.Array:
    """``obs`` as a vector ``[obs_dim]``: an array as is, a dict's ``"state"`` entry, or
    every leaf flattened and concatenated (``jax.tree`` order: sorted keys)."""
    if isinstance(obs, Mapping):
        if "state" in obs:
            return jnp.ravel(jnp.asarray(obs["state"]))
        leaves = jax.tree_util.tree_leaves(obs)
        return jnp.concatenate([jnp.ravel(jnp.asarray(x)) for x in leaves])
    return jnp.ravel(jnp.asarray(obs))


def _strong(x: Any) -> Any:
    """``x`` as an array that is not weakly typed (PRNG key arrays as they are)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x
    return jax.lax.convert_element_type(x, x.dtype)


def _like(x: Any, ref: Any) -> Any:
    """``x`` cast to the (strong) dtype of ``ref``."""
    ref_dtype = jnp.asarray(ref).dtype
    if jnp.issubdtype(ref_dtype, jax.dtypes.prng_key):
        return x
    return jax.lax.convert_element_type(x, ref_dtype)


class EnvTask(Task):
    """A Brax or Playground env as a :class:`Task`; build it with :func:`from_brax` or
    :func:`from_playground`.

    Attributes:
      env: the wrapped env (its ``reset``/``step`` are closed over, not traced arguments).
      physics_field: name of the physics state inside the wrapped state
        (``"pipeline_state"`` for Brax, ``"data"`` for Playground).
    """

    def __init__(
        self,
        env: Any,
        *,
        name: str,
        episode_length: int,
        frame_skip: int,
        dt: float,
        physics_field: str,
        cost_fn: CostFn | None = None,
        success_fn: SuccessFn | None = None,
        action_bounds: tuple[Any, Any] | None = None,
    ):
        if isinstance(episode_length, bool) or not isinstance(episode_length, (int, np.integer)):
            raise ConfigError(
                f"task {name!r}: episode_length must be an int, got {episode_length!r}"
            )
        if episode_length < 1:
            raise ConfigError(f"task {name!r}: episode_length must be >= 1, got {episode_length}")
        if cost_fn is not None and not callable(cost_fn):
            raise ConfigError(f"task {name!r}: cost_fn must be callable, got {cost_fn!r}")
        if success_fn is not None and not callable(success_fn):
            raise ConfigError(f"task {name!r}: success_fn must be callable, got {success_fn!r}")
        self.env = env
        self.name = name
        self.episode_length = int(episode_length)
        self.frame_skip = max(int(frame_skip), 1)
        self.dt = float(dt)
        self.physics_field = physics_field
        self.cost_fn = cost_fn
        self.success_fn = success_fn
        self.has_success = success_fn is not None
        a = int(env.action_size)
        if action_bounds is None:
            low, high = -np.ones(a, np.float32), np.ones(a, np.float32)
        else:
            low = np.broadcast_to(np.asarray(action_bounds[0], np.float32), (a,)).copy()
            high = np.broadcast_to(np.asarray(action_bounds[1], np.float32), (a,)).copy()
            if not np.all(low < high):
                raise ConfigError(
                    f"task {name!r}: action_bounds need low < high, got {low} and {high}"
                )
        self.action_low, self.action_high = low, high

    def reset(self, key: jax.Array) -> State:
        """The wrapped env's reset from ``key`` (a PRNG key, typed or raw)."""
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)  # both libraries expect raw uint32 keys
        env_state = jax.tree_util.tree_map(_strong, self.env.reset(key))
        return State(data=env_state, t=jnp.zeros((), jnp.int32))

    def _step(self, state: State, action: jax.Array) -> State:
        old = state.data
        new = self.env.step(old, action)
        # Envs may return Python floats or weakly typed leaves from step (Brax's reward
        # and time_out) where reset gave float32 arrays; casting to the input's types
        # keeps the state type-stable, so a jitted step does not recompile per call and
        # a scan carry keeps its type.
        if jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(old):
            new = jax.tree_util.tree_map(_like, new, old)
        else:
            new = jax.tree_util.tree_map(_strong, new)
        return state.replace(data=new, t=state.t + 1)

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        """``cost_fn(state, action, next_state)`` if given, else ``-next_state.data.reward``."""
        if self.cost_fn is not None:
            return jnp.asarray(self.cost_fn(state, action, next_state), jnp.float32)
        return -next_state.data.reward

    def observation(self, state: State) -> jax.Array:
        """The env's observation as ``[obs_dim]`` (see the module docstring for dicts)."""
        return flatten_observation(state.data.obs)

    def success(self, state: State) -> jax.Array:
        """``success_fn(state)`` if given, else False."""
        if self.success_fn is None:
            return jnp.asarray(False)
        return jnp.asarray(self.success_fn(state), bool)

    def is_finite(self, state: State) -> jax.Array:
        """True iff the wrapped physics state (Brax pipeline state / MJX data) is finite."""
        return tree_is_finite(getattr(state.data, self.physics_field))


def from_brax(
    env: Any,
    *,
    name: str | None = None,
    cost_fn: CostFn | None = None,
    success_fn: SuccessFn | None = None,
    episode_length: int = BRAX_EPISODE_LENGTH,
    action_bounds: tuple[Any, Any] | None = None,
) -> EnvTask:
    """Wraps a Brax ``Env`` (unbatched: no ``VmapWrapper``) as a task.

    ``frame_skip`` is the env's ``n_frames`` and ``dt`` its control period ``env.dt``.
    """
    base = getattr(env, "unwrapped", env)
    return EnvTask(
        env,
        name=name or f"brax:{type(base).__name__}",
        episode_length=episode_length,
        frame_skip=int(getattr(base, "_n_frames", 1)),
        dt=float(env.dt),
        physics_field="pipeline_state",
        cost_fn=cost_fn,
        success_fn=success_fn,
        action_bounds=action_bounds,
    )


def from_playground(
    env: Any,
    *,
    name: str | None = None,
    cost_fn: CostFn | None = None,
    success_fn: SuccessFn | None = None,
    episode_length: int | None = None,
    action_bounds: tuple[Any, Any] | None = None,
) -> EnvTask:
    """Wraps a MuJoCo Playground ``MjxEnv`` as a task.

    ``episode_length`` defaults to the env config's; ``frame_skip`` is its
    ``n_substeps`` and ``dt`` its control period ``ctrl_dt``.
    """
    if episode_length is None:
        config = getattr(env.unwrapped, "_config", None)
        episode_length = int(getattr(config, "episode_length", BRAX_EPISODE_LENGTH))
    return EnvTask(
        env,
        name=name or f"playground:{type(env.unwrapped).__name__}",
        episode_length=episode_length,
        frame_skip=int(env.n_substeps),
        dt=float(env.dt),
        physics_field="data",
        cost_fn=cost_fn,
        success_fn=success_fn,
        action_bounds=action_bounds,
    )


_ADAPTER_KEYS = ("cost_fn", "success_fn", "episode_length", "action_bounds")


def _split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    adapter = {k: v for k, v in overrides.items() if k in _ADAPTER_KEYS}
    env_kwargs = {k: v for k, v in overrides.items() if k not in _ADAPTER_KEYS}
    return adapter, env_kwargs


def make_brax(env_name: str, **overrides: Any) -> EnvTask:
    """Task ``"brax:<env_name>"``: ``brax.envs.get_environment`` with the MJX backend.

    ``overrides``: :func:`from_brax` keywords (``episode_length``, ``cost_fn``,
    ``success_fn``, ``action_bounds``); the rest go to the env's constructor
    (e.g. ``backend``, which defaults to ``"mjx"``).

    Raises:
      ConfigError: an unknown Brax env (the message lists Brax's names) or bad arguments.
    """
    try:
        import brax.envs  # lazy: Brax is an optional extra
    except ImportError as e:
        raise ConfigError(f"task 'brax:{env_name}' needs the 'brax' package: {e}") from None

    known = sorted(getattr(brax.envs, "_envs", {}))
    if env_name not in known:
        raise ConfigError(f"unknown brax env {env_name!r}; brax envs: {', '.join(known)}")
    adapter, env_kwargs = _split(overrides)
    env_kwargs.setdefault("backend", "mjx")
    try:
        env = brax.envs.get_environment(env_name, **env_kwargs)
    except TypeError as e:
        raise ConfigError(
            f"task 'brax:{env_name}': bad env argument(s) {env_kwargs}: {e}"
        ) from None
    return from_brax(env, name=f"brax:{env_name}", **adapter)


def make_playground(env_name: str, **overrides: Any) -> EnvTask:
    """Task ``"playground:<env_name>"``: ``mujoco_playground.registry.load``.

    ``overrides``: :func:`from_playground` keywords (``episode_length``, ``cost_fn``,
    ``success_fn``, ``action_bounds``); the rest are the env's config overrides.
    ``impl`` defaults to ``"jax"`` (MJX's JAX pipeline, as the rest of apexjax uses)
    where the env's config has that field. ``episode_length`` also sets the config's.

    Raises:
      ConfigError: an unknown Playground env (the message lists its names) or bad
        config overrides.
      MenagerieNotFoundError: the env needs a MuJoCo Menagerie checkout that Playground
        could not download (the message says where it must go).
    """
    try:
        from mujoco_playground import registry  # lazy: Playground is an optional extra
    except ImportError as e:
        raise ConfigError(
            f"task 'playground:{env_name}' needs the 'playground' package: {e}"
        ) from None

    known = list(registry.ALL_ENVS)
    if env_name not in known:
        raise ConfigError(
            f"unknown playground env {env_name!r}; playground envs: {', '.join(known)}"
        )
    adapter, config_overrides = _split(overrides)
    config = registry.get_default_config(env_name)
    if "impl" in config and "impl" not in config_overrides:
        config_overrides["impl"] = "jax"
    if adapter.get("episode_length") is not None and "episode_length" in config:
        config_overrides["episode_length"] = adapter["episode_length"]
    unknown = sorted(k for k in config_overrides if k.split(".")[0] not in config)
    if unknown:
        raise ConfigError(
            f"task 'playground:{env_name}': unknown override(s) {unknown}; allowed: "
            f"{', '.join(sorted(set(_ADAPTER_KEYS) | set(config)))}"
        )
    try:
        env = registry.load(env_name, config=config, config_overrides=config_overrides)
    except (subprocess.CalledProcessError, OSError, ValueError) as e:
        error = _menagerie_error(env_name, e)
        if error is None:
            raise
        raise error from None
    return from_playground(env, name=f"playground:{env_name}", **adapter)


def _menagerie_error(env_name: str, error: BaseException) -> MenagerieNotFoundError | None:
    """The clear error for ``error`` raised while Playground built ``env_name``, if it comes
    from a missing or partial MuJoCo Menagerie checkout; else ``None``."""
    try:  # where Playground looks for the checkout, and the commit it pins
        from mujoco_playground._src import mjx_env

        path = pathlib.Path(str(mjx_env.MENAGERIE_PATH))
        commit = str(getattr(mjx_env, "MENAGERIE_COMMIT_SHA", ""))
    except (ImportError, AttributeError):
        path, commit = None, ""
    cmd = getattr(error, "cmd", None)
    filename = getattr(error, "filename", None)
    partial = ""
    if isinstance(error, subprocess.CalledProcessError) and cmd and str(cmd[0]) == "git":
        words = [str(c) for c in cmd]
        step = next((f"git {w}" for w in ("clone", "checkout") if w in words), "git")
        reason = (
            f"Playground's download of it failed ({step} exited with status {error.returncode})"
        )
        partial = " (first remove anything a failed download left at that path)"
    elif isinstance(error, FileNotFoundError) and filename in ("git", b"git"):
        reason = "Playground could not download it: the git command is not installed"
    elif isinstance(error, OSError) and path is not None and filename is not None:
        try:
            inside = pathlib.Path(str(filename)).resolve().is_relative_to(path.resolve())
        except (OSError, ValueError):
            inside = False
        if not inside:
            return None
        reason = f"the checkout there is incomplete ({filename}: {error.strerror})"
        partial = " (in place of the incomplete directory)"
    elif isinstance(error, ValueError) and "mujoco_menagerie" in str(error):
        # MuJoCo's compiler cannot open a model file of the checkout
        reason = f"the checkout there is incomplete or of another version ({error})"
        partial = " (in place of the incomplete directory)"
    else:
        return None
    where = str(path) if path is not None else "mujoco_playground/external_deps/mujoco_menagerie"
    checkout = f" && git -C {where} checkout {commit}" if commit else ""
    return MenagerieNotFoundError(
        f"task 'playground:{env_name}' needs a MuJoCo Menagerie checkout (the robot models "
        f"of Playground's locomotion and manipulation envs), and {reason}. Playground looks "
        f"for it at {where} (no setting or environment variable moves it); provide it "
        f"there: `git clone {MENAGERIE_URL} {where}{checkout}`, or make that path a symlink "
        f"to an existing checkout{partial}"
    )
