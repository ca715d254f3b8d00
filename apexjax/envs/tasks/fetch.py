"""Fetch Pick&Place: a Fetch arm picks a block off a table and brings it to a goal.

Model: ``fetch/pick_and_place.xml`` with the Fetch robot's meshes, as shipped by
gymnasium-robotics (the OpenAI robotics FetchPickAndPlace model), loaded from that package
and edited at load time with ``MjSpec``; the environment's set-up is reproduced here.
The edits (tests/test_fetch.py checks MJX against native MuJoCo on the edited model,
and the edited against the original model in native MuJoCo):

1. Contact margin 0.001 -> 0 on the robot's geoms: MJX (JAX backend) implements no
   margin for mesh collisions. A 1 mm margin only makes contacts start 1 mm early.
2. ``contacts="task"`` (the default): the block collides with the gripper (fingers and
   gripper link), the table and the floor, and the gripper with the table and the floor;
   the other 152 of the model's 163 collision pairs go (arm links against the table,
   the block and the robot's own base, head and sensors: mesh-mesh pairs of up to 3,857
   vertices, which MJX evaluates on every step whether they touch or not). With the
   gripper held above the table by its mocap target, the arm links never reach the
   table. ``contacts="full"`` keeps them all (slow: meant for checking).

The robot is driven as in the original: the action ``a`` in [-1, 1]^4 moves the mocap
body welded to the gripper to the gripper's position + 0.05 a[:3] (m) with a fixed
downward orientation, and sets both finger position targets to their current opening +
a[3]. Control period 0.04 s (timestep 0.002 s x frame_skip 20), 50 steps per episode.

Reset (as the original): the arm settled at its start pose (computed once, natively, by
the original's set-up: 10 control steps towards a gripper target above the table); the block at
the gripper's x, y + U(-0.15, 0.15)^2, at least 0.1 m from it, on the table; the goal at
the gripper's position + U(-0.15, 0.15)^3 with its height on the table, and with
probability 0.5 lifted by U(0, 0.45) m into the air.
Cost per step, with ``d = ||block - goal||`` after the step: ``1[d > 0.05]`` (sparse, the
default) or ``d`` (``dense=True``). Success: ``d <= 0.05`` at the last step.
Observation (28): gripper position (3), block position (3), block - gripper (3), finger
openings (2), block orientation as Euler angles (3), block linear velocity relative to the
gripper's (3) and angular velocity (3), gripper velocity (3), finger velocities (2) (the
velocities times the control period, as the original), and the goal (3).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from apexjax.configs import ConfigError, check_choice, check_float
from apexjax.envs.base import State
from apexjax.envs.mujoco_task import MujocoTask, MujocoTaskConfig
from apexjax.envs.registry import register
from apexjax.envs.tasks._assets import load_package_asset

__all__ = ["FetchPickAndPlace", "FetchPickAndPlaceConfig", "fetch_spec", "mat2euler"]

_ASSET = ("gymnasium_robotics", "envs/assets/fetch/pick_and_place.xml")
# The original environment's set-up constants (FetchPickAndPlace-v4).
_INITIAL_QPOS = {
    "robot0:slide0": [0.405],
    "robot0:slide1": [0.48],
    "robot0:slide2": [0.0],
    "object0:joint": [1.25, 0.53, 0.4, 1.0, 0.0, 0.0, 0.0],
}
_GRIPPER_EXTRA_HEIGHT = 0.2
_GRIPPER_QUAT = np.array([1.0, 0.0, 1.0, 0.0])  # unnormalised, as the original
_GRIPPER_PARTS = (
    "robot0:gripper_link",
    "robot0:r_gripper_finger_link",
    "robot0:l_gripper_finger_link",
)
_TASK_BIT = 2


@dataclasses.dataclass(frozen=True)
class FetchPickAndPlaceConfig(MujocoTaskConfig):
    """Attributes: episode_length (control steps, 0.04 s each), frame_skip, dense (cost
    ``||block − goal||`` instead of the sparse ``1[||block − goal|| > threshold]``),
    distance_threshold (m, success radius), contacts ("task" or "full", see the module
    docstring), obj_range (m, half-width of the block's start offset), target_range (m,
    half-width of the goal's offset), target_in_the_air (half the goals are lifted),
    max_goal_height (m, the largest lift), move_scale (m, gripper displacement per unit
    action)."""

    planner_beta: ClassVar[float] = 3.0

    episode_length: int = 50
    frame_skip: int = 20
    dense: bool = False
    distance_threshold: float = 0.05
    contacts: Literal["task", "full"] = "task"
    obj_range: float = 0.15
    target_range: float = 0.15
    target_in_the_air: bool = True
    max_goal_height: float = 0.45
    move_scale: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        c = "FetchPickAndPlaceConfig"
        check_choice(f"{c}.contacts", self.contacts, ("task", "full"))
        for name in ("distance_threshold", "move_scale"):
            check_float(f"{c}.{name}", getattr(self, name), gt=0)
        for name in ("obj_range", "target_range", "max_goal_height"):
            check_float(f"{c}.{name}", getattr(self, name), ge=0)
        if self.obj_range <= 0.1 / np.sqrt(2):
            raise ConfigError(
                f"FetchPickAndPlaceConfig.obj_range: must be > 0.071 (the block starts at "
                f"least 0.1 m from the gripper), got {self.obj_range!r}"
            )


def fetch_spec(contacts: str = "task", original: bool = False) -> mujoco.MjSpec:
    """The pick-and-place model as an ``MjSpec``: the shipped file with the original
    environment's weld reset and the load-time edits of the module docstring, or with the
    weld reset only (``original=True``, native MuJoCo only)."""
    spec = load_package_asset(*_ASSET)
    # The original resets the mocap weld's relative pose to identity before anything runs
    # (the file's default would keep the mocap body's offset at the initial pose).
    for eq in spec.equalities:
        if eq.type == mujoco.mjtEq.mjEQ_WELD:
            eq.data[:7] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    if original:
        return spec
    for g in spec.geoms:
        g.margin = 0.0
    if contacts == "task":
        for g in spec.geoms:
            if not (g.contype or g.conaffinity):
                continue
            body = g.parent.name
            if body in _GRIPPER_PARTS:
                g.contype, g.conaffinity = _TASK_BIT, 0
            elif body == "object0":
                g.contype, g.conaffinity = _TASK_BIT, _TASK_BIT
            elif body in ("table0", "world"):
                g.contype, g.conaffinity = 0, _TASK_BIT
            else:
                g.contype, g.conaffinity = 0, 0
    return spec


def mat2euler(mat: jax.Array) -> jax.Array:
    """Rotation matrix ``[3, 3]`` -> Euler angles ``[3]``, the convention of the original
    environment's observation (gymnasium-robotics ``rotations.mat2euler``)."""
    cy = jnp.sqrt(mat[2, 2] ** 2 + mat[1, 2] ** 2)
    ok = cy > np.finfo(np.float64).eps * 4.0
    z = jnp.where(ok, -jnp.arctan2(mat[0, 1], mat[0, 0]), -jnp.arctan2(-mat[1, 0], mat[1, 1]))
    y = -jnp.arctan2(-mat[0, 2], cy)
    x = jnp.where(ok, -jnp.arctan2(mat[1, 2], mat[2, 2]), 0.0)
    return jnp.stack([x, y, z])


def _settle(m: mujoco.MjModel, frame_skip: int) -> mujoco.MjData:
    """The original environment's set-up, natively: start pose, mocap target above the
    table, 10 control steps."""
    d = mujoco.MjData(m)
    for name, value in _INITIAL_QPOS.items():
        adr = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]
        d.qpos[adr : adr + len(value)] = value
    mujoco.mj_forward(m, d)
    grip = d.site("robot0:grip").xpos.copy()
    d.mocap_pos[0] = grip + np.array([-0.498, 0.005, -0.431 + _GRIPPER_EXTRA_HEIGHT])
    d.mocap_quat[0] = _GRIPPER_QUAT
    for _ in range(10 * frame_skip):
        mujoco.mj_step(m, d)
    return d


class FetchPickAndPlace(MujocoTask):
    has_success = True
    # MJX solver: MuJoCo's defaults. Fewer Newton iterations (4 or 10, with fewer line-search
    # steps) did not make its MJX step any faster (22 physics steps/s each on the 2-core CPU,
    # benchmarks/results/mjx_solver_fetch.json): MJX's kinematics dominates on this model
    derived_fields = ("xpos", "xquat", "site_xpos", "site_xmat", "cvel", "subtree_com")

    def __init__(self, config: FetchPickAndPlaceConfig = FetchPickAndPlaceConfig()):
        mj_model = fetch_spec(config.contacts).compile()
        super().__init__("fetch_pick_and_place", mj_model, config)
        # actions are mocap displacements and finger deltas, not ctrl values
        self.action_low = -np.ones(4, np.float32)
        self.action_high = np.ones(4, np.float32)

        def ident(kind: mujoco.mjtObj, name: str) -> int:
            return mujoco.mj_name2id(mj_model, kind, name)

        self._grip = ident(mujoco.mjtObj.mjOBJ_SITE, "robot0:grip")
        self._object_site = ident(mujoco.mjtObj.mjOBJ_SITE, "object0")
        self._gripper_body = ident(mujoco.mjtObj.mjOBJ_BODY, "robot0:gripper_link")
        self._gripper_root = int(mj_model.body_rootid[self._gripper_body])
        obj_joint = ident(mujoco.mjtObj.mjOBJ_JOINT, "object0:joint")
        self._obj_qpos = int(mj_model.jnt_qposadr[obj_joint])
        self._obj_qvel = int(mj_model.jnt_dofadr[obj_joint])
        fingers = [
            ident(mujoco.mjtObj.mjOBJ_JOINT, f"robot0:{s}_gripper_finger_joint") for s in "lr"
        ]
        self._finger_qpos = np.asarray(mj_model.jnt_qposadr[fingers])
        self._finger_qvel = np.asarray(mj_model.jnt_dofadr[fingers])
        # the actuators' joints, in actuator order (both are the fingers)
        self._act_qpos = np.asarray(mj_model.jnt_qposadr[mj_model.actuator_trnid[:, 0]])
        settled = _settle(mj_model, config.frame_skip)
        self.initial_qpos = settled.qpos.astype(np.float32).copy()
        self.initial_qvel = settled.qvel.astype(np.float32).copy()
        self.initial_gripper_xpos = settled.site("robot0:grip").xpos.astype(np.float32).copy()
        self.height_offset = float(settled.site("object0").xpos[2])

    # ----------------------------------------------------------------- dynamics
    def apply_action(self, state: State, action: jax.Array) -> Any:
        d = state.data
        quat = d.xquat[self._gripper_body] + jnp.asarray(_GRIPPER_QUAT, d.xquat.dtype)
        mocap_pos = d.xpos[self._gripper_body] + self.config.move_scale * action[:3]
        mocap_quat = quat / jnp.linalg.norm(quat)
        ctrl = d.qpos[self._act_qpos] + action[3]
        return d.replace(
            mocap_pos=mocap_pos[None].astype(d.mocap_pos.dtype),
            mocap_quat=mocap_quat[None].astype(d.mocap_quat.dtype),
            ctrl=ctrl.astype(d.ctrl.dtype),
        )

    def _block_start(self, key: jax.Array) -> jax.Array:
        """Block x, y: uniform around the gripper, rejected within 0.1 m of it."""
        center = jnp.asarray(self.initial_gripper_xpos[:2])
        r = self.config.obj_range

        def draw(k):
            return center + jax.random.uniform(k, (2,), minval=-r, maxval=r)

        def cond(carry):
            return jnp.linalg.norm(carry[1] - center) < 0.1

        def body(carry):
            k, _ = carry
            k, sub = jax.random.split(k)
            return k, draw(sub)

        k0, k1 = jax.random.split(key)
        return jax.lax.while_loop(cond, body, (k0, draw(k1)))[1]

    def draw_start(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The random part of :meth:`reset`, as in the original task: the start ``qpos``
        ``[nq]`` (the settled start with the block moved to a uniform x, y within
        ``obj_range`` of the gripper, at least 0.1 m from it) and the goal ``[3]`` (within
        ``target_range`` of the gripper's start in x, y; on the table, or with probability
        1/2 when ``target_in_the_air``, lifted uniformly up to ``max_goal_height``)."""
        k_obj, k_goal, k_air, k_height = jax.random.split(key, 4)
        cfg = self.config
        qpos = jnp.asarray(self.initial_qpos)
        qpos = qpos.at[self._obj_qpos : self._obj_qpos + 2].set(self._block_start(k_obj))
        g = cfg.target_range
        goal = jnp.asarray(self.initial_gripper_xpos) + jax.random.uniform(
            k_goal, (3,), minval=-g, maxval=g
        )
        lift = jax.random.uniform(k_height, (), minval=0.0, maxval=cfg.max_goal_height)
        in_air = (jax.random.uniform(k_air, ()) < 0.5) & cfg.target_in_the_air
        goal = goal.at[2].set(self.height_offset + jnp.where(in_air, lift, 0.0))
        return qpos, goal

    def reset(self, key: jax.Array) -> State:
        qpos, goal = self.draw_start(key)
        data = self.make_data(qpos, jnp.asarray(self.initial_qvel))
        return State(data=data, t=jnp.zeros((), jnp.int32), info={"goal": goal})

    # ------------------------------------------------------------ task quantities
    def block(self, state: State) -> jax.Array:
        """Block position ``[3]`` (m)."""
        return state.data.site_xpos[self._object_site]

    def distance(self, state: State) -> jax.Array:
        """Block-to-goal distance (m), a float scalar."""
        return jnp.linalg.norm(self.block(state) - state.info["goal"])

    def cost(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        del state, action
        d = self.distance(next_state)
        if self.config.dense:
            return d
        return (d > self.config.distance_threshold).astype(jnp.float32)

    def success(self, state: State) -> jax.Array:
        return self.distance(state) <= self.config.distance_threshold

    def gripper_velocity(self, state: State) -> jax.Array:
        """World-frame linear velocity ``[3]`` (m/s) of the grip site, as
        ``mj_objectVelocity``: the gripper body's spatial velocity ``cvel`` (angular,
        linear at its tree's centre of mass) moved to the site."""
        d = state.data
        cvel = d.cvel[self._gripper_body]
        offset = d.site_xpos[self._grip] - d.subtree_com[self._gripper_root]
        return cvel[3:] + jnp.cross(cvel[:3], offset)

    def observation(self, state: State) -> jax.Array:
        """The original's 25 observations and the goal (28); see the module docstring."""
        d = state.data
        dt = self.dt
        grip = d.site_xpos[self._grip]
        obj = self.block(state)
        grip_vel = self.gripper_velocity(state) * dt
        obj_vel = d.qvel[self._obj_qvel : self._obj_qvel + 3] * dt - grip_vel
        # the free joint's angular velocity is in the block's frame; the original's is global
        rot = d.site_xmat[self._object_site]
        obj_angvel = rot @ d.qvel[self._obj_qvel + 3 : self._obj_qvel + 6] * dt
        return jnp.concatenate(
            [
                grip,
                obj,
                obj - grip,
                d.qpos[self._finger_qpos],
                mat2euler(rot),
                obj_vel,
                obj_angvel,
                grip_vel,
                d.qvel[self._finger_qvel] * dt,
                state.info["goal"],
            ]
        )


register("fetch_pick_and_place", FetchPickAndPlace, FetchPickAndPlaceConfig)
