"""Colored (power-law) Gaussian noise along a time axis, generated with an FFT.

The power spectral density falls as ``1/f^beta`` along the time axis: ``beta = 0`` is
white noise, ``beta = 2`` is Brownian-like (red) noise. Samples are zero-mean with unit
variance in expectation, for any ``beta >= 0``. ``beta`` may be a traced value, so
changing it does not recompile. The construction follows Timmer & Koenig (1995) as in
the iCEM authors' ``colorednoise`` package (scale complex Gaussian Fourier coefficients
by ``f^(-beta/2)`` and invert). Normalisation: ``"exact"`` (the default) divides by the
exact standard deviation, so samples have unit variance; ``"colorednoise"`` divides by that
package's normaliser, which leaves out the zero-frequency term, so samples have a marginal
standard deviation above 1 (about 1.01-1.03 at beta = 0.25 and 1.1-1.2 at beta >= 2.5 for
30 steps), as the authors' planner drew them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["NORMALIZATIONS", "colored_noise"]

#: how :func:`colored_noise` scales its samples.
NORMALIZATIONS = ("exact", "colorednoise")


def colored_noise(
    key: jax.Array,
    beta: float | jax.Array,
    shape: Sequence[int],
    time_axis: int = -2,
    dtype: jnp.dtype = jnp.float32,
    normalization: str = "exact",
) -> jax.Array:
    """Gaussian noise with PSD ∝ 1/f^beta along ``time_axis``, unit variance by default.

    Args:
      key: PRNG key.
      beta: spectral exponent (>= 0; float or traced scalar).
      shape: output shape, e.g. ``[N, h, d]`` (time is axis -2 by default).
      time_axis: which axis is time.
      dtype: output float dtype.
      normalization: ``"exact"`` (unit variance) or ``"colorednoise"`` (the ``colorednoise``
        package's normaliser: the same spectrum, a marginal std above 1; see the module
        docstring).

    Returns:
      ``shape`` array. Independent across every axis but ``time_axis``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization: {normalization!r} is not allowed; choose one of {list(NORMALIZATIONS)}"
        )
    shape = tuple(int(s) for s in shape)
    axis = time_axis % len(shape)
    n = shape[axis]
    if n <= 1:  # no spectrum to shape over a single step
        return jax.random.normal(key, shape, dtype)
    # work with time last: [..., n]
    other = shape[:axis] + shape[axis + 1 :]
    beta = jnp.asarray(beta, jnp.float32)
    f = jnp.fft.rfftfreq(n)  # [n//2 + 1]
    f = jnp.maximum(f, 1.0 / n)  # DC gets the lowest resolved frequency's amplitude
    scale = f ** (-beta / 2.0)
    # exact std of the result: each interior frequency adds 4 s^2/n^2 to the variance,
    # the (sqrt(2)-scaled, real) DC and Nyquist terms 2 s^2/n^2 each
    var = 4.0 * jnp.sum(scale[1:] ** 2) + 2.0 * scale[0] ** 2
    if n % 2 == 0:
        var = var - 2.0 * scale[-1] ** 2
    sigma = jnp.sqrt(var) / n
    if normalization == "colorednoise":
        # the package's: the non-zero frequencies only, the Nyquist one (even n) halved
        w = scale[1:]
        if n % 2 == 0:
            w = w.at[-1].multiply(0.5)
        sigma = 2.0 * jnp.sqrt(jnp.sum(w**2)) / n

    kr, ki = jax.random.split(key)
    nf = f.shape[0]
    sr = jax.random.normal(kr, (*other, nf), jnp.float32) * scale
    si = jax.random.normal(ki, (*other, nf), jnp.float32) * scale
    # DC and (even n) Nyquist coefficients are real for a real signal
    si = si.at[..., 0].set(0.0)
    sr = sr.at[..., 0].multiply(jnp.sqrt(2.0))
    if n % 2 == 0:
        si = si.at[..., -1].set(0.0)
        sr = sr.at[..., -1].multiply(jnp.sqrt(2.0))
    y = jnp.fft.irfft(sr + 1j * si, n=n, axis=-1) / sigma  # [..., n]
    return jnp.moveaxis(y, -1, axis).astype(dtype)
