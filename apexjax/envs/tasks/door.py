"""Door (Adroit): a 24-DoF Shadow hand on a 4-DoF arm undoes a latch and swings a door open.

Model: ``adroit_door.xml`` with its meshes, as shipped by gymnasium-robotics (the DAPG /
D4RL Adroit door model), loaded from that package and edited at load time with ``MjSpec``.
The edits, each the smallest one that lets MJX (JAX backend) run the model and keeps the
task's physics (tests/test_door.py checks MJX against native MuJoCo on the edited
model, and the edited against the original model in native MuJoCo):

1. Collidable cylinders -> capsules of the same radius and the same overall length (half
   length minus radius). MJX has no cylinder-box collision, and the five collidable
   cylinders (the two frame posts, the two door edges, the latch hub) touch the hand's
   box geoms (palm, little-finger metacarpal, thumb base). A capsule has the cylinder's
   exact cross-section and differs only in its rounded ends: the posts are 0.5 m tall and
   the hand works at their middle, where the latch bolt stops against the frame post.
2. ``noslip_iterations`` 20 -> 0: MJX has no no-slip solver, so keeping it would make the
   native model (used to check MJX) do a post-solve that MJX never does.
3. The 65 sensors (actuator forces, fingertip touch) are removed: the task reads none of
   them, and MJX evaluates every sensor on every step.
4. Only with ``contacts="hand_door"`` (not the default): the door assembly (frame, door,
   latch) keeps its contacts with itself and with the hand, and everything else goes: the
   hand's self-collision pairs, and the table and floor. Fewer contacts for CPU runs;
   fingers may then pass through each other and the hand through the table.
   ``contacts="full"`` keeps every original contact.

The door's position is drawn per episode, as in the original task (frame body at
x ~ U(-0.3, -0.2), y ~ U(0.25, 0.35), z ~ U(0.252, 0.35)). The original writes it into the
model; here it lives in ``state.info["door_pos"]`` and :meth:`Door.model_fields` puts it into
the model's ``body_pos`` for that episode (traced on MJX, per simulation natively), so
batched episodes each have their own door.

Actions: the 28 actuators' position targets within their control ranges (the original
environment's [-1, 1] actions are the same targets, affinely rescaled). Control period
0.01 s (timestep 0.002 s x frame_skip 5), 200 steps per episode.
Cost per step (REFERENCE.md, the unshaped door), with ``d`` the hinge angle after the step::

    c = 0.1 (d - 1.57)^2 + 1e-5 ||qvel||^2 - 2 [d > 0.2] - 8 [d > 1.0] - 10 [d > 1.35]

``shaped=True`` adds the original's ``0.1 ||palm - handle||``. Success: hinge >= 1.35 rad at
the last step. Observation (39, as the original): hand and arm joint angles but the arm's
slide (27), latch, hinge, palm position (3), handle position (3), palm - handle (3), and
+1 if the hinge is past 1.0 rad else -1. Reset: every joint at 0 with zero velocity.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import mujoco

from apexjax.configs import ConfigError, check_choice, is_real
from apexjax.envs.base import State
from apexjax.envs.mujoco_task import MujocoTask, MujocoTaskConfig
from apexjax.envs.registry import register
from apexjax.envs.tasks._assets import load_package_asset

__all__ = ["Door", "DoorConfig", "door_spec"]

_ASSET = ("gymnasium_robotics", "envs/assets/adroit_hand/adroit_door.xml")
_DOOR_BODIES = ("frame", "door", "latch")
# contype/conaffinity bit of the door assembly in "hand_door": its geoms collide with each
# other (the latch bolt against the frame post is the latch) and with the hand's geoms,
# whose affinity is 0 so that the hand does not collide with itself.
_DOOR_BIT = 2


@dataclasses.dataclass(frozen=True)
class DoorConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.01 s each), frame_skip, shaped (add the
    original 0.1·||palm − handle|| shaping term), handle_cost (its weight), velocity_cost
    (weight of ||qvel||²), success_angle (rad, hinge angle counted as open), contacts
    ("full": every contact of the original model; "hand_door": only hand vs door assembly,
    faster, see the module docstring), door_low / door_high (m, the box the door frame's
    position is drawn from)."""

    planner_beta: ClassVar[float] = 2.5

    episode_length: int = 200
    frame_skip: int = 5
    shaped: bool = False
    handle_cost: float = 0.1
    velocity_cost: float = 1e-5
    success_angle: float = 1.35
    contacts: Literal["full", "hand_door"] = "full"
    door_low: tuple[float, float, float] = (-0.3, 0.25, 0.252)
    door_high: tuple[float, float, float] = (-0.2, 0.35, 0.35)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("DoorConfig.contacts", self.contacts, ("full", "hand_door"))
        for name in ("door_low", "door_high"):
            v = getattr(self, name)
            ok = isinstance(v, (tuple, list)) and len(v) == 3
            if not ok or not all(is_real(x) and math.isfinite(x) for x in v):
                raise ConfigError(f"DoorConfig.{name}: expected 3 floats (x, y, z), got {v!r}")
        if any(lo > hi for lo, hi in zip(self.door_low, self.door_high, strict=True)):
            raise ConfigError(
                f"DoorConfig.door_low: {self.door_low} must be <= door_high {self.door_high}"
            )


def door_spec(contacts: str = "full", original: bool = False) -> mujoco.MjSpec:
    """The door model as an ``MjSpec``: the shipped file with the load-time edits of the
    module docstring, or unedited (``original=True``, native MuJoCo only)."""
    spec = load_package_asset(*_ASSET)
    if original:
        return spec
    for g in spec.geoms:
        if g.type == mujoco.mjtGeom.mjGEOM_CYLINDER and (g.contype or g.conaffinity):
            g.type = mujoco.mjtGeom.mjGEOM_CAPSULE
            g.size[1] = g.size[1] - g.size[0]
    spec.option.noslip_iterations = 0
    for s in list(spec.sensors):
        spec.delete(s)
    if contacts == "hand_door":
        for p in list(spec.pairs):
            spec.delete(p)
        for g in spec.geoms:
            if not (g.contype or g.conaffinity):
                continue
            body = g.parent.name
            if body in _DOOR_BODIES:
                g.contype, g.conaffinity = _DOOR_BIT, _DOOR_BIT
            elif body in ("world", "table"):
                g.contype, g.conaffinity = 0, 0
            else:
                g.contype, g.conaffinity = _DOOR_BIT, 0
    return spec


class Door(MujocoTask):
    has_success = True
    # MJX solver: 4 Newton iterations and 8 line-search steps keep the one-step error on
    # hand-door contact states and run the MJX step 4.8x faster
    # (benchmarks/results/mjx_solver_contacts.json)
    mjx_options: ClassVar[dict[str, float]] = {"iterations": 4, "ls_iterations": 8}
    derived_fields = ("site_xpos",)
    model_field_names = ("body_pos",)

    def __init__(self, config: DoorConfig = DoorConfig()):
        mj_model = door_spec(config.contacts).compile()
        super().__init__("door", mj_model, config)

        def ident(kind: mujoco.mjtObj, name: str) -> int:
            return mujoco.mj_name2id(mj_model, kind, name)

        self._frame = ident(mujoco.mjtObj.mjOBJ_BODY, "frame")
        self._hinge = int(mj_model.jnt_qposadr[ident(mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")])
        self._latch = int(mj_model.jnt_qposadr[ident(mujoco.mjtObj.mjOBJ_JOINT, "latch")])
        self._palm = ident(mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
        self._handle = ident(mujoco.mjtObj.mjOBJ_SITE, "S_handle")

    def model_fields(self, info: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """``body_pos`` with the episode's door frame position (the model's without one)."""
        body_pos = jnp.asarray(self.mj_model.body_pos, jnp.float32)
        if "door_pos" in info:
            body_pos = body_pos.at[self._frame].set(info["door_pos"])
        return {"body_pos": body_pos}

    def draw_door(self, key: jax.Array) -> jax.Array:
        """A door frame position ``[3]`` (m), uniform in the config's box."""
        lo, hi = jnp.asarray(self.config.door_low), jnp.asarray(self.config.door_high)
        return jax.random.uniform(key, (3,), minval=lo, maxval=hi)

    def reset(self, key: jax.Array) -> State:
        info = {"door_pos": self.draw_door(key)}
        nq, nv = self.mj_model.nq, self.mj_model.nv
        data = self.make_data(jnp.zeros(nq), jnp.zeros(nv), info)
        return State(data=data, t=jnp.zeros((), jnp.int32), info=info)

    def hinge(self, state: State) -> jax.Array:
        """Door hinge angle (rad), a float scalar: 0 closed, 1.57 fully open."""
        return state.data.qpos[self._hinge]

    def palm_to_handle(self, state: State) -> jax.Array:
        """Palm minus handle position ``[3]`` (m)."""
        return state.data.site_xpos[self._palm] - state.data.site_xpos[self._handle]

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state, action
        d = self.hinge(next_state)
        c = 0.1 * (d - 1.57) ** 2 + self.config.velocity_cost * jnp.sum(next_state.data.qvel**2)
        c = c - 2.0 * (d > 0.2) - 8.0 * (d > 1.0) - 10.0 * (d > 1.35)
        if self.config.shaped:
            c = c + self.config.handle_cost * jnp.linalg.norm(self.palm_to_handle(next_state))
        return c

    def observation(self, state: State) -> jax.Array:
        """``[joints but the arm slide (27), latch, hinge, palm (3), handle (3),
        palm - handle (3), open flag]`` (39)."""
        q = state.data.qpos
        d = self.hinge(state)
        palm = state.data.site_xpos[self._palm]
        handle = state.data.site_xpos[self._handle]
        return jnp.concatenate(
            [
                q[1:-2],
                q[self._latch][None],
                d[None],
                palm,
                handle,
                palm - handle,
                jnp.where(d > 1.0, 1.0, -1.0)[None],
            ]
        )

    def success(self, state: State) -> jax.Array:
        return self.hinge(state) >= self.config.success_angle


register("door", Door, DoorConfig)
