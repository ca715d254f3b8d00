"""Loading MJCF models shipped with apexjax or with its dependencies."""

from __future__ import annotations

import importlib.resources
import importlib.util
import pathlib

import mujoco

__all__ = ["load_asset", "load_package_asset"]

# the apexjax extra that installs a package some task models come from
_EXTRAS = {"gymnasium_robotics": "robotics"}


def load_asset(filename: str) -> mujoco.MjModel:
    """Loads ``apexjax/envs/assets/<filename>``."""
    path = importlib.resources.files("apexjax.envs") / "assets" / filename
    with importlib.resources.as_file(path) as p:
        return mujoco.MjModel.from_xml_path(str(p))


def load_package_asset(package: str, relative: str) -> mujoco.MjSpec:
    """Parses an MJCF file shipped inside an installed package into an editable ``MjSpec``.

    The package is located, not imported (importing some, such as gymnasium-robotics,
    registers environments and logs warnings)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        extra = _EXTRAS.get(package)
        hint = f"pip install 'apexjax[{extra}]'" if extra else f"pip install {package}"
        raise ModuleNotFoundError(
            f"this task loads its model from the package {package!r}, which is not "
            f"installed: {hint}"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} has no {relative} (version not supported?)")
    return mujoco.MjSpec.from_file(str(path))
