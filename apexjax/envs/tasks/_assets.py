"""Loading MJCF models shipped with apexjax or with its dependencies."""

from __future__ import annotations

import importlib.resources

import mujoco

__all__ = ["load_asset", "load_package_asset"]


def load_asset(filename: str) -> mujoco.MjModel:
    """Loads ``apexjax/envs/assets/<filename>``."""
    path = importlib.resources.files("apexjax.envs") / "assets" / filename
    with importlib.resources.as_file(path) as p:
        return mujoco.MjModel.from_xml_path(str(p))


def load_package_asset(package: str, relative: str) -> mujoco.MjSpec:
    """Parses an MJCF file shipped inside an installed package into an editable ``MjSpec``."""
    path = importlib.resources.files(package) / relative
    with importlib.resources.as_file(path) as p:
        return mujoco.MjSpec.from_file(str(p))
