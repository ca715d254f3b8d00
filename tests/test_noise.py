"""Colored noise: unit variance, PSD slope -beta along time, traced beta, any shape."""

import jax
import numpy as np
import pytest

from apexjax.planning.noise import colored_noise


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 2.5])
def test_spectrum_slope_is_minus_beta(beta):
    x = np.asarray(colored_noise(jax.random.key(0), beta, (256, 128, 1)))[..., 0]  # [N, T]
    psd = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(x.shape[-1])
    slope = np.polyfit(np.log(f[1:]), np.log(psd[1:]), 1)[0]
    assert abs(slope + beta) < 0.1, slope


@pytest.mark.parametrize(("beta", "h"), [(0.0, 30), (2.5, 1), (2.5, 7), (2.5, 30)])
def test_unit_variance_zero_mean(beta, h):
    x = np.asarray(colored_noise(jax.random.key(1), beta, (4000, h, 3)))
    assert x.shape == (4000, h, 3)
    assert abs(x.var() - 1.0) < 0.05
    assert abs(x.mean()) < 0.05


@pytest.mark.parametrize("beta", [0.25, 2.5, 3.0])
def test_colorednoise_normalization_is_the_packages_scale(beta):
    """The authors' ``colorednoise`` package: same spectrum, marginal std above 1."""
    cn = pytest.importorskip("colorednoise")
    ref = cn.powerlaw_psd_gaussian(beta, size=(20000, 1, 30), random_state=0)  # [N, d, h]
    ours = np.asarray(
        colored_noise(jax.random.key(4), beta, (20000, 30, 1), normalization="colorednoise")
    )
    np.testing.assert_allclose(ours.std(), ref.std(), rtol=0.02)
    # per time step, as the package's (the ends of a window vary less than its middle)
    np.testing.assert_allclose(ours[..., 0].std(axis=0), ref[:, 0].std(axis=0), rtol=0.05)
    exact = np.asarray(colored_noise(jax.random.key(4), beta, (20000, 30, 1)))
    assert ours.std() > exact.std() * (1.02 if beta < 1 else 1.1)
    with pytest.raises(ValueError, match="normalization"):
        colored_noise(jax.random.key(0), beta, (2, 30, 1), normalization="unit")


def test_beta_is_traced_and_time_axis_selectable():
    f = jax.jit(lambda b: colored_noise(jax.random.key(2), b, (5, 16, 2)))
    a, b = f(0.0), f(3.0)
    assert f._cache_size() == 1

    # red noise is smoother in time than white noise
    def roughness(v):
        return float(np.mean(np.diff(np.asarray(v), axis=1) ** 2))

    assert roughness(b) < 0.5 * roughness(a)
    y = colored_noise(jax.random.key(3), 2.0, (16, 4), time_axis=0)
    assert y.shape == (16, 4)
