"""Policy network, normaliser and training: bounds, statistics, fitting, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import policy
from apexjax.configs import ConfigError, parse_overrides

LOW = np.array([-2.0, 0.0, -0.5], np.float32)
HIGH = np.array([2.0, 1.0, 0.5], np.float32)
SMALL = policy.PolicyConfig(hidden=(32, 32), batch_size=64, learning_rate=3e-3)


def test_apply_within_bounds_single_and_batch():
    state = policy.init(SMALL, jax.random.key(0), 4, LOW, HIGH)
    # Large outputs: scale the last layer up so tanh saturates.
    params = [dict(p) for p in state.params]
    params[-1]["W"] = params[-1]["W"] * 1e4
    obs = 100.0 * jax.random.normal(jax.random.key(1), (50, 4))
    a = policy.apply(SMALL, params, state.normalizer, obs, LOW, HIGH)
    assert a.shape == (50, 3)
    assert bool(jnp.all((a >= LOW) & (a <= HIGH)))
    single = policy.apply(SMALL, params, state.normalizer, obs[3], LOW, HIGH)
    assert single.shape == (3,)
    np.testing.assert_allclose(single, a[3], rtol=1e-5, atol=1e-5)
    # The fresh policy starts near the middle of the range.
    a0 = policy.act(SMALL, state, obs)
    np.testing.assert_allclose(a0, jnp.broadcast_to((LOW + HIGH) / 2, a0.shape), atol=0.2)


def test_normalizer_matches_numpy_with_mask_and_batches():
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(300, 5)) * [1, 10, 0.1, 5, 2] + [0, 3, -1, 100, 7]).astype(np.float32)
    mask = rng.random(300) < 0.7
    norm = policy.normalizer_init(5)
    for chunk in range(3):
        sl = slice(100 * chunk, 100 * (chunk + 1))
        norm = norm.update(jnp.asarray(data[sl]), jnp.asarray(mask[sl]))
    kept = data[mask]
    assert float(norm.count) == kept.shape[0]
    np.testing.assert_allclose(norm.mean, kept.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jnp.sqrt(norm.var), kept.std(0), rtol=1e-4)
    z = np.asarray(norm.normalize(jnp.asarray(kept)))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)


def test_empty_normalizer_is_identity_and_clips():
    norm = policy.normalizer_init(2, eps=1e-12, clip=3.0)
    x = jnp.array([[0.5, -1.0], [10.0, -10.0]])
    np.testing.assert_allclose(norm.normalize(x), [[0.5, -1.0], [3.0, -3.0]], rtol=1e-5)


def _linear_sample_fn(obs_dim):
    M = jax.random.normal(jax.random.key(42), (obs_dim, 3)) * 0.3

    def target(obs):
        u = jnp.tanh(obs @ M)
        return (HIGH + LOW) / 2 + u * (HIGH - LOW) / 2

    def sample_fn(key):
        obs = 2.0 * jax.random.normal(key, (SMALL.batch_size, obs_dim)) + 1.0
        return obs, target(obs), jnp.ones((SMALL.batch_size,))

    return sample_fn, target


def test_train_steps_fits_known_mapping_and_is_deterministic():
    obs_dim = 4
    sample_fn, _ = _linear_sample_fn(obs_dim)
    state = policy.init(SMALL, jax.random.key(0), obs_dim, LOW, HIGH)
    obs0, _, _ = sample_fn(jax.random.key(7))
    state = policy.update_normalizer(state, obs0)

    train = jax.jit(lambda s, k: policy.train_steps(SMALL, s, k, sample_fn, 300))
    test_obs, test_act, _ = sample_fn(jax.random.key(99))

    def test_loss(s):
        return float(
            policy.loss(SMALL, s.params, s.normalizer, test_obs, test_act, None, LOW, HIGH)
        )

    before = test_loss(state)
    new, mean_loss = train(state, jax.random.key(1))
    after = test_loss(new)
    assert after < 0.05 * before, (before, after)
    assert float(mean_loss) < before
    assert int(new.step) == 300
    # The normaliser is untouched by training.
    np.testing.assert_array_equal(new.normalizer.mean, state.normalizer.mean)

    again, again_loss = train(state, jax.random.key(1))
    for a, b in zip(
        jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(again.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert float(again_loss) == float(mean_loss)


def test_init_deterministic_and_key_dependent():
    a = policy.init(SMALL, jax.random.key(3), 4, LOW, HIGH)
    b = policy.init(SMALL, jax.random.key(3), 4, LOW, HIGH)
    c = policy.init(SMALL, jax.random.key(4), 4, LOW, HIGH)
    np.testing.assert_array_equal(a.params[0]["W"], b.params[0]["W"])
    assert not np.array_equal(a.params[0]["W"], c.params[0]["W"])
    assert [p["W"].shape for p in a.params] == [(4, 32), (32, 32), (32, 3)]


def test_loss_weights_and_zero_weights():
    state = policy.init(SMALL, jax.random.key(0), 4, LOW, HIGH)
    obs = jax.random.normal(jax.random.key(1), (8, 4))
    target = jnp.broadcast_to(HIGH, (8, 3))
    args = (state.params, state.normalizer, obs, target)
    full = policy.loss(SMALL, *args, None, LOW, HIGH)
    ones = policy.loss(SMALL, *args, jnp.ones(8), LOW, HIGH)
    np.testing.assert_allclose(full, ones, rtol=1e-6)
    # Targets at the upper bound are +1 in normalised units; the fresh policy outputs ~0.
    np.testing.assert_allclose(full, 1.0, atol=0.2)
    assert float(policy.loss(SMALL, *args, jnp.zeros(8), LOW, HIGH)) == 0.0


def test_no_clip_and_weight_decay_optimizer_runs():
    sample_fn, _ = _linear_sample_fn(4)

    def trained(**kw):
        cfg = policy.PolicyConfig(hidden=(8,), activation="relu", **kw)
        state = policy.init(cfg, jax.random.key(0), 4, LOW, HIGH)
        new, mean_loss = policy.train_steps(cfg, state, jax.random.key(1), sample_fn, 3)
        assert np.isfinite(float(mean_loss)) and int(new.step) == 3
        return state, new

    start, plain = trained(grad_clip=None, weight_decay=0.0)
    _, decayed = trained(grad_clip=None, weight_decay=0.5)
    # the updates moved the weights, and decoupled weight decay pulls them toward zero
    assert not np.allclose(plain.params[0]["W"], start.params[0]["W"])
    norm = lambda s: float(sum(jnp.sum(layer["W"] ** 2) for layer in s.params))  # noqa: E731
    assert norm(decayed) < norm(plain)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"hidden": (0, 4)}, "hidden"),
        ({"hidden": "256"}, "hidden"),
        ({"activation": "tanh"}, "activation"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"normalizer_eps": -1e-3}, "normalizer_eps"),
        ({"normalizer_clip": 0.0}, "normalizer_clip"),
    ],
)
def test_bad_config_raises(kwargs, field):
    with pytest.raises(ConfigError, match=f"PolicyConfig.{field}"):
        policy.PolicyConfig(**kwargs)


def test_config_overrides_parse():
    cfg = parse_overrides(
        policy.PolicyConfig, ["hidden=64,64,64", "activation=relu", "grad_clip=none"]
    )
    assert cfg.hidden == (64, 64, 64) and cfg.activation == "relu" and cfg.grad_clip is None


def test_apply_takes_the_activation_from_its_config():
    relu = policy.PolicyConfig(hidden=(8,), activation="relu")
    silu = policy.PolicyConfig(hidden=(8,), activation="silu")
    state = policy.init(relu, jax.random.key(0), 4, LOW, HIGH)
    obs = jax.random.normal(jax.random.key(1), (5, 4))
    a_relu = policy.apply(relu, state.params, state.normalizer, obs, LOW, HIGH)
    np.testing.assert_array_equal(a_relu, policy.act(relu, state, obs))
    a_silu = policy.apply(silu, state.params, state.normalizer, obs, LOW, HIGH)
    assert not np.allclose(a_relu, a_silu)  # the same weights, another network


def test_one_action_normalisation_for_the_loss_and_the_guidance():
    from apexjax import guidance

    assert guidance.normalize_action is policy.normalize_action
    np.testing.assert_allclose(policy.normalize_action(HIGH, LOW, HIGH), np.ones_like(HIGH))
    np.testing.assert_allclose(policy.normalize_action(LOW, LOW, HIGH), -np.ones_like(LOW))
