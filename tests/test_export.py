"""NumPy export: matches the JAX policy, loads without JAX, rejects damaged files."""

import subprocess
import sys
import textwrap
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apexjax import export, policy

LOW = np.array([-1.0, 0.0], np.float32)
HIGH = np.array([1.0, 3.0], np.float32)


@pytest.fixture(scope="module", params=["silu", "relu"])
def trained(request):
    cfg = policy.PolicyConfig(hidden=(16, 8), activation=request.param, output_scale=1.0)
    state = policy.init(cfg, jax.random.key(0), 3, LOW, HIGH)
    obs = 5.0 * jax.random.normal(jax.random.key(1), (64, 3)) + 2.0
    state = policy.update_normalizer(state, obs)
    return cfg, state


def test_numpy_matches_jax(trained, tmp_path):
    cfg, state = trained
    path = export.export_policy(tmp_path / "p.npz", state, cfg)
    pol = export.load_numpy_policy(path)
    obs = 6.0 * np.asarray(jax.random.normal(jax.random.key(2), (20, 3)), np.float32)
    expected = np.asarray(policy.act(cfg, state, jnp.asarray(obs)))
    got = pol(obs)
    assert got.shape == (20, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    single = pol(obs[0])
    assert single.shape == (2,)
    np.testing.assert_allclose(single, expected[0], atol=1e-5, rtol=1e-5)
    assert np.all((got >= LOW) & (got <= HIGH))
    with pytest.raises(ValueError, match="obs must have shape"):
        pol(np.zeros(4))


def test_loads_without_jax(trained, tmp_path):
    cfg, state = trained
    path = export.export_policy(tmp_path / "p.npz", state, cfg)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["jax"] = None  # any jax import now fails
        from apexjax.export import load_numpy_policy
        import numpy as np
        print(load_numpy_policy({str(path)!r})(np.zeros(3)).shape)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2,)"


def test_damaged_files_raise_clear_errors(trained, tmp_path):
    cfg, state = trained
    good = export.export_policy(tmp_path / "good.npz", state, cfg)
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}

    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in arrays.items() if k != "obs_std"})
    with pytest.raises(ValueError, match=r"missing\.npz.*'obs_std'"):
        export.load_numpy_policy(missing)

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"corrupt\.npz"):
        export.load_numpy_policy(corrupt)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated\.npz"):
        export.load_numpy_policy(truncated)

    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, **{**arrays, "W1": arrays["W1"][:-1]})
    with pytest.raises(ValueError, match=r"shapes\.npz.*layer 1"):
        export.load_numpy_policy(shapes)

    version = tmp_path / "version.npz"
    np.savez(version, **{**arrays, "format_version": np.asarray(99)})
    with pytest.raises(ValueError, match="format_version 99"):
        export.load_numpy_policy(version)

    with pytest.raises(FileNotFoundError):
        export.load_numpy_policy(tmp_path / "nope.npz")
    assert zipfile.is_zipfile(good)


def test_the_file_gets_the_usual_mode(trained, tmp_path):
    """Like any new file (0o666 & ~umask), not tempfile's private 0o600."""
    import os

    cfg, state = trained
    old = os.umask(0o022)
    try:
        path = export.export_policy(tmp_path / "p.npz", state, cfg)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary left behind
