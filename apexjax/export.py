"""Policy export to a NumPy ``.npz`` and NumPy-only inference for deployment.

:func:`load_numpy_policy` and :class:`NumpyPolicy` import nothing but NumPy (this module
imports JAX only inside :func:`export_policy`/:func:`export_params`), so a robot or a
plain script can run an exported policy without JAX installed.

File format (``format_version`` 1), every entry a plain array (no pickles):
``format_version`` int, ``activation`` str, ``num_layers`` int, ``W{i}`` ``[in, out]`` and
``b{i}`` ``[out]`` for ``i < num_layers``, ``obs_mean`` ``[O]``, ``obs_std`` ``[O]``,
``obs_clip`` float, ``action_low`` ``[A]``, ``action_high`` ``[A]``.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from apexjax.policy import Normalizer, PolicyConfig, PolicyState

__all__ = ["FORMAT_VERSION", "NumpyPolicy", "export_params", "export_policy", "load_numpy_policy"]

FORMAT_VERSION = 1
_ACTIVATIONS = ("relu", "silu")


def export_params(
    path: str | os.PathLike[str],
    params: Any,
    normalizer: Normalizer,
    action_low: Any,
    action_high: Any,
    activation: str,
) -> Path:
    """Writes ``params`` (list of ``{"W", "b"}``), the normaliser and the bounds to ``path``.

    The file is written to a temporary name and renamed, so a reader never sees half of it;
    it gets the mode any new file gets (``0o666 & ~umask``, e.g. ``0o644``). Returns the
    path written.
    """

    if activation not in _ACTIVATIONS:
        raise ValueError(f"export: activation {activation!r} is not one of {_ACTIVATIONS}")
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(FORMAT_VERSION, np.int64),
        "activation": np.asarray(activation),
        "num_layers": np.asarray(len(params), np.int64),
        "obs_mean": np.asarray(normalizer.mean, np.float32),
        "obs_std": np.asarray(normalizer.std, np.float32),
        "obs_clip": np.asarray(normalizer.clip, np.float32),
        "action_low": np.asarray(action_low, np.float32),
        "action_high": np.asarray(action_high, np.float32),
    }
    for i, layer in enumerate(params):
        arrays[f"W{i}"] = np.asarray(layer["W"], np.float32)
        arrays[f"b{i}"] = np.asarray(layer["b"], np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its file is 0o600 whatever the umask, and stays so once renamed
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_policy(path: str | os.PathLike[str], state: PolicyState, config: PolicyConfig) -> Path:
    """Exports a trained :class:`~apexjax.policy.PolicyState` (its own bounds) to ``path``."""
    return export_params(
        path,
        state.params,
        state.normalizer,
        state.action_low,
        state.action_high,
        config.activation,
    )


def _silu(x: np.ndarray) -> np.ndarray:
    return x * (0.5 * (1.0 + np.tanh(0.5 * x)))  # = x * sigmoid(x), without exp overflow


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class NumpyPolicy:
    """An exported policy evaluated with NumPy alone (float32).

    Attributes:
      weights, biases: per-layer ``[in, out]`` and ``[out]`` arrays.
      obs_mean, obs_std: ``[O]``; obs_clip: float.
      action_low, action_high: ``[A]``.
      activation: ``"relu"`` or ``"silu"``.
    """

    def __init__(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        obs_clip: float,
        action_low: np.ndarray,
        action_high: np.ndarray,
        activation: str,
    ):
        self.weights = weights
        self.biases = biases
        self.obs_mean = obs_mean
        self.obs_std = obs_std
        self.obs_clip = np.float32(obs_clip)
        self.action_low = action_low
        self.action_high = action_high
        self.activation = activation
        self._act = _silu if activation == "silu" else _relu

    @property
    def obs_dim(self) -> int:
        return int(self.obs_mean.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.action_low.shape[0])

    def __call__(self, obs: Any) -> np.ndarray:
        """``obs [O]`` or ``[B, O]`` -> actions ``[A]`` or ``[B, A]`` within the bounds."""
        x = np.asarray(obs, np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(
                f"NumpyPolicy: obs must have shape [{self.obs_dim}] or [B, {self.obs_dim}], "
                f"got {x.shape}"
            )
        x = np.clip((x - self.obs_mean) / self.obs_std, -self.obs_clip, self.obs_clip)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            x = np.tanh(x) if i == last else self._act(x)
        half = (self.action_high - self.action_low) / np.float32(2.0)
        mid = (self.action_high + self.action_low) / np.float32(2.0)
        return (mid + x * half).astype(np.float32)


def _bad(path: Path, what: str) -> ValueError:
    return ValueError(f"exported policy {str(path)!r}: {what}")


def load_numpy_policy(path: str | os.PathLike[str]) -> NumpyPolicy:
    """Reads a file written by :func:`export_policy`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an ``.npz``, a missing entry, an unknown format version, or
        inconsistent shapes; the message names the file and the entry.
    """
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(path, f"not a readable .npz file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _bad(path, "not an .npz archive (a single .npy array?)")

    with npz:

        def get(key: str) -> np.ndarray:
            if key not in npz.files:
                raise _bad(path, f"missing field {key!r}")
            try:
                return npz[key]
            except Exception as e:  # a damaged member of the archive
                raise _bad(path, f"cannot read field {key!r} ({e})") from None

        version = int(get("format_version"))
        if version != FORMAT_VERSION:
            raise _bad(
                path, f"format_version {version} is not supported (expected {FORMAT_VERSION})"
            )
        activation = str(get("activation"))
        if activation not in _ACTIVATIONS:
            raise _bad(
                path, f"field 'activation' is {activation!r}, expected one of {_ACTIVATIONS}"
            )
        num_layers = int(get("num_layers"))
        if num_layers < 1:
            raise _bad(path, f"field 'num_layers' is {num_layers}, expected >= 1")
        weights = [get(f"W{i}").astype(np.float32) for i in range(num_layers)]
        biases = [get(f"b{i}").astype(np.float32) for i in range(num_layers)]
        mean = get("obs_mean").astype(np.float32)
        std = get("obs_std").astype(np.float32)
        clip = float(get("obs_clip"))
        low = get("action_low").astype(np.float32)
        high = get("action_high").astype(np.float32)

    n_in = mean.shape[0] if mean.ndim == 1 else -1
    if mean.ndim != 1 or std.shape != mean.shape:
        raise _bad(path, f"obs_mean {mean.shape} and obs_std {std.shape} must both be [O]")
    if low.ndim != 1 or high.shape != low.shape:
        raise _bad(path, f"action_low {low.shape} and action_high {high.shape} must both be [A]")
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or w.shape[0] != n_in or b.shape != (w.shape[1],):
            raise _bad(
                path,
                f"layer {i}: W{i} {w.shape} / b{i} {b.shape} do not follow a [{n_in}]-wide input",
            )
        n_in = w.shape[1]
    if n_in != low.shape[0]:
        raise _bad(path, f"last layer has {n_in} outputs but the bounds have {low.shape[0]}")
    return NumpyPolicy(weights, biases, mean, std, clip, low, high, activation)
