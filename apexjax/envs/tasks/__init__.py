"""The tasks shipped with apexjax; each module registers its task(s) in :mod:`apexjax.envs.registry`."""
