"""Deterministic MLP policy distilled from the planner: params pytree, normaliser, training.

The network maps a normalised observation through ``len(hidden)`` activated layers to
``tanh`` outputs in ``[-1, 1]``, rescaled affinely to the action bounds. Parameters are a
plain pytree, ``[{"W": [in, out], "b": [out]}, ...]``, so they can be saved, averaged
and sharded without any module machinery.

Normaliser policy: the normaliser is NOT touched by :func:`train_steps`. The training loop
updates it with :func:`update_normalizer` on exactly the rows it adds to the aggregated
dataset (same mask), so its statistics cover all data seen so far; warm-started
parameters see only a small input shift from one iteration to the next.

Action bounds are passed explicitly to :func:`apply` and :func:`loss` (which take the network's
activation from the :class:`PolicyConfig`, as every function here does); :class:`PolicyState`
also carries the bounds given to :func:`init`, which :func:`act` and :func:`train_steps` use.
One name per operation: :meth:`Normalizer.update` / :meth:`Normalizer.normalize` on the
statistics, :func:`update_normalizer` on a policy state, :func:`normalize_action` for the
action scale (the guidance distance uses the same).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from apexjax.configs import ConfigError, check_choice, check_float, check_int

__all__ = [
    "Activation",
    "Normalizer",
    "PolicyConfig",
    "PolicyState",
    "SampleFn",
    "act",
    "apply",
    "init",
    "init_params",
    "loss",
    "make_optimizer",
    "normalize_action",
    "normalizer_init",
    "train_steps",
    "update_normalizer",
]

Activation = Literal["relu", "silu"]
Params = list[dict[str, jax.Array]]
#: ``sample_fn(key) -> (obs [B, O], actions [B, A], weights [B])``; e.g.
#: ``lambda k: aggregator.sample(dataset, k, config.batch_size)``.
SampleFn = Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Policy network and optimiser settings.

    Attributes:
      hidden: widths of the hidden layers (static: they fix the parameter shapes).
      activation: hidden-layer nonlinearity, ``"relu"`` or ``"silu"``.
      learning_rate: Adam(W) step size (held in the optimiser state, so changing it
        between runs does not change compiled shapes).
      weight_decay: decoupled weight decay (AdamW); 0 is plain Adam.
      grad_clip: global-norm gradient clipping threshold, or None for no clipping.
      batch_size: minibatch size per SGD step.
      normalizer_eps: added to the running variance before the square root, so
        constant observation features do not divide by zero.
      normalizer_clip: normalised observations are clipped to ``[-clip, clip]``.
      output_scale: std multiplier of the last layer's initial weights; small so the
        initial policy outputs near the middle of the action range.
    """

    hidden: tuple[int, ...] = (256, 256)
    activation: Activation = "silu"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    batch_size: int = 256
    normalizer_eps: float = 1e-6
    normalizer_clip: float = 10.0
    output_scale: float = 0.01

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if not isinstance(self.hidden, tuple) or not all(
            _is_int(h) and h >= 1 for h in self.hidden
        ):
            raise ConfigError(
                f"{name}.hidden: {self.hidden!r} is not allowed; expected a tuple of ints >= 1"
            )
        check_choice(f"{name}.activation", self.activation, sorted(_ACTIVATIONS))
        for field in ("learning_rate", "normalizer_eps", "normalizer_clip", "output_scale"):
            check_float(f"{name}.{field}", getattr(self, field), gt=0)
        check_float(f"{name}.weight_decay", self.weight_decay, ge=0)
        check_float(f"{name}.grad_clip", self.grad_clip, gt=0, none_ok=True)
        check_int(f"{name}.batch_size", self.batch_size, ge=1)


# ------------------------------------------------------------------------ normaliser
@struct.dataclass
class Normalizer:
    """Running observation statistics (parallel/Welford merge).

    Attributes:
      mean: ``[O]`` running mean.
      m2: ``[O]`` running sum of squared deviations from the mean.
      count: float32 scalar, number of rows merged so far.
      eps: static, added to the variance before the square root.
      clip: static, normalised values are clipped to ``[-clip, clip]``.
    """

    mean: jax.Array
    m2: jax.Array
    count: jax.Array
    eps: float = struct.field(pytree_node=False, default=1e-6)
    clip: float = struct.field(pytree_node=False, default=10.0)

    @property
    def var(self) -> jax.Array:
        """``[O]`` population variance; 1 before any data (so normalising is the identity)."""
        return jnp.where(self.count > 0, self.m2 / jnp.maximum(self.count, 1.0), 1.0)

    @property
    def std(self) -> jax.Array:
        """``[O]`` the scale :meth:`normalize` divides by: ``sqrt(var + eps)``."""
        return jnp.sqrt(self.var + self.eps)

    def update(self, obs: jax.Array, mask: jax.Array | None = None) -> Normalizer:
        """Merges a batch ``obs [B, O]`` (rows with ``mask [B]`` False skipped) into the
        statistics: Chan et al.'s parallel merge, exact for any batch split, stable for
        large counts. (At the policy level: :func:`update_normalizer`.)"""
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim != 2 or obs.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"Normalizer.update: obs must have shape [B, {self.mean.shape[0]}], got {obs.shape}"
            )
        w = jnp.ones(obs.shape[:1], jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
        n_b = jnp.sum(w)
        mean_b = jnp.sum(w[:, None] * obs, axis=0) / jnp.maximum(n_b, 1.0)
        m2_b = jnp.sum(w[:, None] * jnp.square(obs - mean_b), axis=0)
        n = self.count + n_b
        delta = mean_b - self.mean
        frac = n_b / jnp.maximum(n, 1.0)
        mean = self.mean + delta * frac
        m2 = self.m2 + m2_b + jnp.square(delta) * self.count * frac
        return self.replace(mean=mean, m2=m2, count=n)

    def normalize(self, obs: jax.Array) -> jax.Array:
        """``obs [..., O]`` -> ``(obs - mean) / sqrt(var + eps)``, clipped to ``±clip``."""
        z = (jnp.asarray(obs, jnp.float32) - self.mean) / self.std
        return jnp.clip(z, -self.clip, self.clip)


def normalizer_init(obs_dim: int, eps: float = 1e-6, clip: float = 10.0) -> Normalizer:
    """Empty statistics for ``obs_dim`` features (normalising is the identity until updated)."""
    z = jnp.zeros((obs_dim,), jnp.float32)
    return Normalizer(mean=z, m2=z, count=jnp.zeros((), jnp.float32), eps=eps, clip=clip)


def normalize_action(actions: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Maps actions ``[..., A]`` in ``[low, high]`` to ``[-1, 1]`` (clipped; a zero-width
    bound maps to 0): the one action normalisation, shared by the imitation loss and the
    guidance distance (:func:`apexjax.guidance.guidance_distance`)."""
    low = jnp.asarray(low, jnp.float32)
    high = jnp.asarray(high, jnp.float32)
    half = jnp.maximum((high - low) / 2.0, 1e-8)
    return jnp.clip((jnp.asarray(actions, jnp.float32) - (high + low) / 2.0) / half, -1.0, 1.0)


# ---------------------------------------------------------------------------- network
def init_params(
    key: jax.Array, obs_dim: int, action_dim: int, hidden: tuple[int, ...], output_scale: float
) -> Params:
    """LeCun-normal hidden layers, a small last layer, zero biases.

    Returns ``[{"W": [in, out], "b": [out]}, ...]`` with ``len(hidden) + 1`` layers.
    """
    sizes = (obs_dim, *hidden, action_dim)
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        scale = 1.0 / math.sqrt(n_in)
        if i == len(sizes) - 2:
            scale *= output_scale
        w = scale * jax.random.normal(k, (n_in, n_out), jnp.float32)
        params.append({"W": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return params


def _unit_actions(
    params: Params, normalizer: Normalizer, obs: jax.Array, activation: str
) -> jax.Array:
    """``obs [..., O]`` -> actions in ``[-1, 1]``, ``[..., A]``."""
    act_fn = _ACTIVATIONS[activation]
    x = normalizer.normalize(obs)
    for layer in params[:-1]:
        x = act_fn(x @ layer["W"] + layer["b"])
    return jnp.tanh(x @ params[-1]["W"] + params[-1]["b"])


def apply(
    config: PolicyConfig,
    params: Params,
    normalizer: Normalizer,
    obs: jax.Array,
    action_low: jax.Array,
    action_high: jax.Array,
) -> jax.Array:
    """Policy action for ``obs [..., O]`` (one observation or any batch): ``[..., A]``,
    the network of ``config`` (its activation). ``action_low``/``action_high`` are ``[A]``;
    outputs lie in ``[low, high]``. :func:`act` does the same from a :class:`PolicyState`.
    """
    low = jnp.asarray(action_low, jnp.float32)
    high = jnp.asarray(action_high, jnp.float32)
    u = _unit_actions(params, normalizer, obs, config.activation)
    return (high + low) / 2.0 + u * (high - low) / 2.0


# ------------------------------------------------------------------------ train state
@struct.dataclass
class PolicyState:
    """Everything that changes during policy training.

    Attributes:
      params: the MLP parameters (see :func:`init_params`).
      normalizer: observation statistics.
      opt_state: optax state of :func:`make_optimizer`.
      step: int32 scalar, SGD steps taken.
      action_low, action_high: ``[A]`` bounds given to :func:`init`.
    """

    params: Params
    normalizer: Normalizer
    opt_state: Any
    step: jax.Array
    action_low: jax.Array
    action_high: jax.Array


def make_optimizer(config: PolicyConfig) -> optax.GradientTransformation:
    """AdamW (Adam when ``weight_decay`` is 0) after optional global-norm clipping.

    The learning rate and weight decay are injected hyperparameters: they live in the
    optimiser state as arrays rather than being baked into the compiled step; the values
    in effect are those stored in ``opt_state`` by :func:`init`, not a later config's.
    """
    adam = optax.inject_hyperparams(optax.adamw)(
        learning_rate=config.learning_rate, weight_decay=config.weight_decay
    )
    if config.grad_clip is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adam)


def init(
    config: PolicyConfig,
    key: jax.Array,
    obs_dim: int,
    action_low: Any,
    action_high: Any,
) -> PolicyState:
    """Fresh policy for ``obs_dim`` observations and bounds ``action_low/high [A]``."""
    low = jnp.asarray(action_low, jnp.float32)
    high = jnp.asarray(action_high, jnp.float32)
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(
            f"policy.init: action_low and action_high must both have shape [A], "
            f"got {low.shape} and {high.shape}"
        )
    if not _is_int(obs_dim) or obs_dim < 1:
        raise ValueError(f"policy.init: obs_dim must be an int >= 1, got {obs_dim!r}")
    params = init_params(key, obs_dim, low.shape[0], config.hidden, config.output_scale)
    return PolicyState(
        params=params,
        normalizer=normalizer_init(obs_dim, config.normalizer_eps, config.normalizer_clip),
        opt_state=make_optimizer(config).init(params),
        step=jnp.zeros((), jnp.int32),
        action_low=low,
        action_high=high,
    )


def act(config: PolicyConfig, state: PolicyState, obs: jax.Array) -> jax.Array:
    """:func:`apply` with the state's parameters, normaliser and bounds: ``[..., O] -> [..., A]``."""
    return apply(config, state.params, state.normalizer, obs, state.action_low, state.action_high)


def update_normalizer(
    state: PolicyState, obs: jax.Array, mask: jax.Array | None = None
) -> PolicyState:
    """Merges ``obs [B, O]`` (rows where ``mask [B]`` is True) into the state's normaliser."""
    return state.replace(normalizer=state.normalizer.update(obs, mask))


def loss(
    config: PolicyConfig,
    params: Params,
    normalizer: Normalizer,
    obs: jax.Array,
    target_actions: jax.Array,
    weights: jax.Array | None,
    action_low: jax.Array,
    action_high: jax.Array,
) -> jax.Array:
    """Weighted MSE between predicted and target actions, both mapped to ``[-1, 1]``.

    ``obs [B, O]``, ``target_actions [B, A]``, ``weights [B]`` (None: all ones). Averaged
    over action dimensions, then a weighted mean over rows; 0 when all weights are 0.
    """
    low = jnp.asarray(action_low, jnp.float32)
    high = jnp.asarray(action_high, jnp.float32)
    pred = _unit_actions(params, normalizer, obs, config.activation)
    target = normalize_action(target_actions, low, high)
    per_row = jnp.mean(jnp.square(pred - target), axis=-1)
    w = jnp.ones_like(per_row) if weights is None else jnp.asarray(weights, jnp.float32)
    return jnp.sum(w * per_row) / jnp.maximum(jnp.sum(w), 1e-8)


def train_steps(
    config: PolicyConfig,
    state: PolicyState,
    key: jax.Array,
    sample_fn: SampleFn,
    num_steps: int,
) -> tuple[PolicyState, jax.Array]:
    """``num_steps`` minibatch SGD steps under ``lax.scan``; returns ``(state, mean loss)``.

    ``sample_fn(key) -> (obs [B, O], actions [B, A], weights [B])`` draws one minibatch
    (``B`` usually ``config.batch_size``). ``num_steps`` and ``sample_fn`` are static; the
    normaliser is left unchanged (see the module docstring). Jit-able.
    """
    if not _is_int(num_steps) or num_steps < 1:
        raise ValueError(f"train_steps: num_steps must be an int >= 1, got {num_steps!r}")
    opt = make_optimizer(config)
    grad_fn = jax.value_and_grad(loss, argnums=1)

    def body(carry, k):
        params, opt_state = carry
        obs, actions, weights = sample_fn(k)
        value, grads = grad_fn(
            config,
            params,
            state.normalizer,
            obs,
            actions,
            weights,
            state.action_low,
            state.action_high,
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), value

    keys = jax.random.split(key, num_steps)
    (params, opt_state), losses = jax.lax.scan(body, (state.params, state.opt_state), keys)
    new_state = state.replace(
        params=params, opt_state=opt_state, step=state.step + jnp.int32(num_steps)
    )
    return new_state, jnp.mean(losses)
