"""Typed configuration of the classic-control track (``ratiolab train --env ... --algo ...``).

``GymTrainConfig`` is the top level; one section per algorithm family. The on-policy defaults
are CleanRL ``ppo.py`` parity (arXiv 1707.06347); ``PQNConfig`` defaults are
CleanRL ``pqn.py`` (arXiv 2407.04811). MDPO and BPO run with the PPO settings and their own
coefficients ("library settings": neither paper gives classic-control settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ratiolab.config import check_fields, check_range
from ratiolab.gym.algorithm import Algorithm
from ratiolab.gym.algos import ALGOS, algo_class
from ratiolab.objectives import OBJECTIVES
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY
from ratiolab.trackers import check_trackers

#: ``ppo.objective``'s default, the registry's PPO-clip objective.
DEFAULT_OBJECTIVE = "ppo"


@dataclass
class PPOConfig:
    """Rollout and learner settings of the actor-critic algorithms (CleanRL ``ppo.py`` defaults).

    ``objective`` names any entry of :mod:`ratiolab.objectives` (``ppo`` and ``grpo_guard`` get
    ``clip_low = clip_high = clip_coef``: ``ratiolab.gym.onpolicy.CLIP_COEF_OBJECTIVES``); ``objective_params``
    are passed to it verbatim; an algorithm with its own objective (``mdpo``, ``bpo``) ignores the field.
    ``action_std`` (continuous actions): None learns the Gaussian's state-independent log-std (CleanRL);
    a number fixes the std, which ``grpo_guard`` needs (its ratio normalisation, arXiv 2510.22319 Eq. 8,
    assumes the old and the new step share one std); ignored for discrete actions. ``compile`` runs the
    whole minibatch loss (objective, value loss, extra terms) of the on-policy algorithms through
    ``torch.compile`` (CPU inductor; a Python number that changes between iterations, such as an annealed clip
    or MDPO's iteration index, costs a recompile); off by default: see benchmarks/bench_gym.py for its
    warm-up cost and gain.
    """

    num_envs: int = 4
    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    anneal_clip: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    target_kl: float | None = None
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu"] = "tanh"
    norm_obs: bool = False
    norm_reward: bool = False
    objective: str = DEFAULT_OBJECTIVE
    objective_params: dict[str, Any] = field(default_factory=dict)
    bpo_u_coef: float = 0.5
    compile: bool = False
    action_std: float | None = None

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


@dataclass
class PROPSConfig:
    """PROPS behaviour-policy adaptation (arXiv 2311.08290; NicholasCorrado/PROPS discrete defaults)."""

    num_steps: int = 16
    learning_rate: float = 1e-3
    epochs: int = 16
    num_minibatches: int = 4
    clip: float = 0.3
    target_kl: float = 0.01


@dataclass
class PDPPOConfig:
    """PDPPO's post-decision critic (arXiv 2504.05150): its own learning rate (``lr_critic``)."""

    critic_learning_rate: float = 1.2e-3


@dataclass
class MDPOOffConfig:
    """Off-policy (SAC-based) MDPO, ``mdpo_off/run_mujoco.py`` + README defaults (arXiv 2005.09814).

    ``old_policy_every`` is T_k (env steps between copies of pi_old); ``kl_const`` is c = 1/t_k;
    ``entropy_temp`` is lambda. One gradient step per environment step after ``learning_starts``.
    ``steps_per_iteration`` only sets how often a metrics row is logged.
    """

    num_envs: int = 1
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 10_000
    learning_rate: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    entropy_temp: float = 0.2
    kl_const: float = 1.0
    old_policy_every: int = 1000
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    steps_per_iteration: int = 1000


@dataclass
class PQNConfig:
    """PQN (arXiv 2407.04811), CleanRL ``pqn.py`` CartPole defaults."""

    num_envs: int = 4
    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    q_lambda: float = 0.65
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    max_grad_norm: float = 10.0
    hidden: list[int] = field(default_factory=lambda: [120, 84])
    reward_scale: float = 1.0

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


#: Trajectory estimators that need nothing but logged episodes (no Q-hat, no marginal weights).
LOGGED_ESTIMATORS: tuple[str, ...] = ("pdis", "snpdis", "tis", "sntis")


@dataclass
class OPEGateConfig:
    """RL-100's OPE gate in the training loop (arXiv 2510.14830; ratiolab.gym.gate), off by default.

    ``enabled``: gate every update of an on-policy algorithm on a discrete-action env; a rejected
    update is rolled back. ``estimator`` (one of ``LOGGED_ESTIMATORS``) scores the candidate on
    ``episodes`` episodes logged before the update by the incumbent mixed with ``epsilon`` uniform;
    accept iff the estimate exceeds the best accepted estimate by more than ``margin``. Costs
    ``episodes`` extra episodes per update.
    """

    enabled: bool = False
    estimator: str = "pdis"
    episodes: int = 10
    epsilon: float = 0.1
    margin: float = 0.0


@dataclass
class GymTrainConfig:
    """One classic-control run.

    ``total_steps`` counts environment steps over all envs. ``eval_every`` (updates, 0 = only at the
    end) runs ``eval_episodes`` deterministic episodes; with ``target_return`` set, training stops as
    soon as that evaluation mean reaches it. ``vector`` picks gymnasium's sync or async vector env
    (sync measured faster for cheap envs on 2 cores: benchmarks/bench_gym.py); exact resume needs
    ``sync``. ``algo`` names a class of ``ratiolab.gym.algorithm.ALGOS`` (``ppo``, ``mdpo``, ``bpo``, ``props``,
    ``pdppo``, ``pqn``, ``mdpo_off``); the checks below read its declarations, never its name.
    ``torch_threads`` is applied inside the training loop only. ``keep_checkpoints`` (>= 1)
    is how many of the newest checkpoints the run directory keeps (more for ``ratiolab ope``).
    ``sync``. ``torch_threads`` is applied inside the training loop only. ``keep_checkpoints`` (>= 1)
    is how many of the newest checkpoints the run directory keeps (more for ``ratiolab ope``). ``log`` names
    the experiment trackers that also receive every logged row (:mod:`ratiolab.trackers`).
    """

    env_id: str = "CartPole-v1"
    algo: str = "ppo"
    seed: int = 1
    total_steps: int = 500_000
    vector: Literal["sync", "async"] = "sync"
    torch_threads: int = 1
    eval_episodes: int = 20
    eval_every: int = 0
    eval_seed: int = 10_000
    target_return: float | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    ppo: PPOConfig = field(default_factory=PPOConfig)
    props: PROPSConfig = field(default_factory=PROPSConfig)
    pdppo: PDPPOConfig = field(default_factory=PDPPOConfig)
    pqn: PQNConfig = field(default_factory=PQNConfig)
    mdpo_off: MDPOOffConfig = field(default_factory=MDPOOffConfig)
    ope_gate: OPEGateConfig = field(default_factory=OPEGateConfig)
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_trackers(self.log)
        for name in ("total_steps", "torch_threads", "eval_episodes", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = only at the end), got {getattr(self, name)}")
        p, q = self.ppo, self.pqn
        cls = self.algo_class
        self._check_ranges()
        if p.num_envs < 1 or p.num_steps < 1 or not 1 <= p.num_minibatches <= p.batch_size:
            raise ValueError(
                f"ppo: need num_envs, num_steps >= 1 and 1 <= num_minibatches <= num_envs*num_steps, got "
                f"num_envs={p.num_envs}, num_steps={p.num_steps}, num_minibatches={p.num_minibatches}"
            )
        if q.num_envs < 1 or q.num_steps < 1 or not 1 <= q.num_minibatches <= q.batch_size:
            raise ValueError(
                f"pqn: need num_envs, num_steps >= 1 and 1 <= num_minibatches <= num_envs*num_steps, got "
                f"num_envs={q.num_envs}, num_steps={q.num_steps}, num_minibatches={q.num_minibatches}"
            )
        if cls.on_policy and not p.clip_coef > 0:
            raise ValueError(
                f"ppo.clip_coef must be > 0 (the PPO clip range, and the value clip with clip_vloss), got "
                f"{p.clip_coef}; use e.g. ppo.clip_coef=0.2"
            )
        if p.action_std is not None and not p.action_std > 0:
            raise ValueError(f"ppo.action_std must be > 0 (or null: a learned std), got {p.action_std}")
        if p.objective in GAUSSIAN_ONLY and p.action_std is None:
            raise ValueError(
                f"ppo.objective={p.objective!r} needs a fixed Gaussian std shared by the old and the new policy: "
                "set ppo.action_std (e.g. ppo.action_std=0.5)"
            )
        g = self.ope_gate
        if g.enabled and not cls.on_policy:
            on_policy = [n for n, c in ALGOS.items() if c.on_policy]
            raise ValueError(f"ope_gate.enabled gates the on-policy algorithms {on_policy}, not {self.algo!r}")
        if g.estimator not in LOGGED_ESTIMATORS:
            raise ValueError(f"ope_gate.estimator must be one of {list(LOGGED_ESTIMATORS)}, got {g.estimator!r}")
        if g.episodes < 1 or not 0 < g.epsilon <= 1 or not 0 <= g.margin < float("inf"):
            raise ValueError(
                f"ope_gate: need episodes >= 1, 0 < epsilon <= 1 and a finite margin >= 0, got episodes="
                f"{g.episodes}, epsilon={g.epsilon}, margin={g.margin}"
            )
        if self.total_steps < self.steps_per_update:
            raise ValueError(
                f"total_steps={self.total_steps} is below one update of algo {self.algo!r} "
                f"({self.steps_per_update} env steps); set total_steps >= {self.steps_per_update}"
            )
        if p.compile and not cls.on_policy:
            raise ValueError(f"ppo.compile applies to the on-policy algorithms' minibatch loss, not algo "
                             f"{self.algo!r}: set ppo.compile=false")
        if not self.objective_configurable and p.objective != DEFAULT_OBJECTIVE:
            configurable = [n for n, c in ALGOS.items() if c.on_policy and c.objective is None]
            raise ValueError(
                f"ppo.objective={p.objective!r} only applies to algo {' or '.join(map(repr, configurable))}; algo "
                f"{self.algo!r} uses {cls.objective or 'its own loss'!r}: leave ppo.objective at "
                f"{DEFAULT_OBJECTIVE!r}"
            )

    def _check_ranges(self) -> None:
        """Types, finite numbers and the valid interval of every numeric setting (before any file is written)."""
        check_fields(self)
        p, r, q, m = self.ppo, self.props, self.pqn, self.mdpo_off
        positive, unit, nonneg, count = "(0, inf)", "[0, 1]", "[0, inf)", "[1, inf)"
        for name, value, interval in (
            ("ppo.learning_rate", p.learning_rate, positive), ("ppo.gamma", p.gamma, unit),
            ("ppo.gae_lambda", p.gae_lambda, unit), ("ppo.update_epochs", p.update_epochs, count),
            ("ppo.ent_coef", p.ent_coef, nonneg), ("ppo.vf_coef", p.vf_coef, nonneg),
            ("ppo.max_grad_norm", p.max_grad_norm, positive), ("ppo.bpo_u_coef", p.bpo_u_coef, nonneg),
            ("props.num_steps", r.num_steps, count), ("props.learning_rate", r.learning_rate, positive),
            ("props.epochs", r.epochs, count), ("props.num_minibatches", r.num_minibatches, count),
            ("props.clip", r.clip, positive), ("props.target_kl", r.target_kl, positive),
            ("pdppo.critic_learning_rate", self.pdppo.critic_learning_rate, positive),
            ("pqn.learning_rate", q.learning_rate, positive), ("pqn.gamma", q.gamma, unit),
            ("pqn.q_lambda", q.q_lambda, unit), ("pqn.start_e", q.start_e, unit), ("pqn.end_e", q.end_e, unit),
            ("pqn.exploration_fraction", q.exploration_fraction, "(0, 1]"),
            ("pqn.update_epochs", q.update_epochs, count),
            ("pqn.max_grad_norm", q.max_grad_norm, positive), ("pqn.reward_scale", q.reward_scale, positive),
            ("mdpo_off.num_envs", m.num_envs, count), ("mdpo_off.batch_size", m.batch_size, count),
            ("mdpo_off.buffer_size", m.buffer_size, f"[{m.batch_size}, inf)"),
            ("mdpo_off.learning_starts", m.learning_starts, nonneg),
            ("mdpo_off.learning_rate", m.learning_rate, positive),
            ("mdpo_off.gamma", m.gamma, unit), ("mdpo_off.tau", m.tau, "(0, 1]"),
            ("mdpo_off.entropy_temp", m.entropy_temp, nonneg), ("mdpo_off.kl_const", m.kl_const, positive),
            ("mdpo_off.old_policy_every", m.old_policy_every, count),
            ("mdpo_off.steps_per_iteration", m.steps_per_iteration, count),
        ):
            check_range(name, value, interval)
        if p.target_kl is not None:
            check_range("ppo.target_kl", p.target_kl, positive, "or null: no early stop")
        for name, hidden in (("ppo.hidden", p.hidden), ("pqn.hidden", q.hidden), ("mdpo_off.hidden", m.hidden)):
            if not hidden or min(hidden) < 1:
                raise ValueError(f"{name} = {hidden} must list one or more positive layer widths, e.g. [64, 64]")
        if self.algo_class.on_policy:
            entry = OBJECTIVES.get(self.objective)  # ValueError listing the registered objectives
            unknown = sorted(set(p.objective_params) - set(entry.params))
            if unknown:
                raise ValueError(f"ppo.objective_params: objective {self.objective!r} has no parameter(s) {unknown}; "
                                 f"valid: {sorted(entry.params)}")

    @property
    def algo_class(self) -> type[Algorithm]:
        """The registered class of ``algo`` (``ValueError`` listing the valid names)."""
        return algo_class(self.algo)

    @property
    def objective_configurable(self) -> bool:
        """Whether ``ppo.objective`` picks the objective (an on-policy algorithm without its own)."""
        return self.algo_class.on_policy and self.algo_class.objective is None

    @property
    def objective(self) -> str:
        """The registry objective the algorithm calls (``ppo.objective`` where it is configurable)."""
        own = self.algo_class.objective
        return self.ppo.objective if own is None else own

    @property
    def steps_per_update(self) -> int:
        """Environment steps between two updates (one metrics row) of ``algo``, over all envs."""
        return self.algo_class.update_steps(self)

    @property
    def num_envs(self) -> int:
        return self.algo_class.env_count(self)
