"""The shared actor-critic base of the on-policy algorithms (PPO, MDPO, BPO, PROPS, PDPPO: ``ratiolab.gym.algos``).

One iteration collects ``num_steps x num_envs`` transitions, computes done/truncation-aware GAE
(``gae_episodic``) and runs ``update_epochs`` passes of minibatch Adam. The policy loss is the registry
objective ``cfg.objective`` (:class:`RegistryObjective`) on ``[minibatch, 1]`` tensors, so every
registered objective runs here; the value loss is CleanRL's (optionally clipped) ``0.5 (V - R)^2``. Actor
and critic parameters live in one flat tensor (:func:`flatten_parameters`), so clipping and Adam are one
op each; with one minibatch per epoch nothing is shuffled. Metrics stay 0-d tensors and are reduced once
per iteration (one host transfer). ``ppo.compile`` runs the whole minibatch loss (policy, value and extra
terms) through ``torch.compile``.

An algorithm is a subclass that overrides some of these hooks (each documented below):
:meth:`OnPolicy.behaviour_policy` (who acts in the rollout), :meth:`OnPolicy.on_step` (after each vector
step), :meth:`OnPolicy.finish_rollout` (extra rollout tensors), :meth:`OnPolicy.prepare_batch` (the
flat batch at the iteration start: advantages, anchors), :meth:`OnPolicy.objective_inputs` (extra
objective inputs per minibatch), :meth:`OnPolicy.extra_loss` (extra loss terms) and
:meth:`OnPolicy.after_step` (after each optimiser step); ``critic_heads`` and ``needs_old_params``
are its declarations.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ratiolab import objectives
from ratiolab.advantages.episodic import gae_episodic
from ratiolab.correction import log_ratio
from ratiolab.gym.algorithm import Algorithm
from ratiolab.gym.policies import Actor, flatten_parameters, mlp
from ratiolab.gym.rollout import Step
from ratiolab.objectives import OBJECTIVES
from ratiolab.objectives.aggregation import aggregate
from ratiolab.objectives.core import COMMON
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY
from ratiolab.types import PolicyLossInputs

if TYPE_CHECKING:
    from ratiolab.gym.config import GymTrainConfig
    from ratiolab.gym.rollout import VecRunner

#: Objectives whose clip widths are ``ppo.clip_coef`` (annealed with ``ppo.anneal_clip``): ``clip_low =
#: clip_high = clip``; every other objective keeps its registry defaults unless ``ppo.objective_params`` sets them.
CLIP_COEF_OBJECTIVES: tuple[str, ...] = ("ppo", "grpo_guard")


def value_loss(v: torch.Tensor, v_old: torch.Tensor, ret: torch.Tensor, clip: float, clipped: bool) -> torch.Tensor:
    """``0.5 mean (V - R)^2``; ``clipped``: ``0.5 mean max((V - R)^2, (V_old + clip(V - V_old, +-clip) - R)^2)``."""
    if not clipped:
        return 0.5 * (v - ret).square().mean()
    v_clip = v_old + (v - v_old).clamp(-clip, clip)
    return 0.5 * torch.maximum((v - ret).square(), (v_clip - ret).square()).mean()


class RegistryObjective:
    """Registry objective ``name`` (with ``params``) on the gym's ``[B, 1]`` minibatches (one row per env step,
    mask all ones).

    ``validate=True`` (the first minibatch of every iteration) is :func:`ratiolab.objectives.compute` with its
    input value checks and every metric. The other minibatches call the registered function directly, with
    ``compute``'s composition for inputs without ``behav_logp`` and ``ref_logp`` (gym batches carry neither,
    so there is no correction and ``compute`` refuses ``kl_coef > 0`` on the first call):
    ``loss = agg(l(r_stale) - entropy_coef H)``, metrics = the function's own plus ``approx_kl`` (k3 of
    KL(old || new)) and ``entropy``. Both give the same numbers (tests/gym/test_gym_update.py); the direct
    call skips the parameter resolution and the ratio statistics that dominate the cost on these shapes.
    """

    def __init__(self, name: str, params: Mapping[str, Any]) -> None:
        self.name, self.params, self.entry = name, dict(params), OBJECTIVES.get(name)
        self._common: dict[str, Any] | None = None
        self._own: dict[str, Any] = {}

    def __call__(
        self, inputs: PolicyLossInputs, *, validate: bool, **data: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if validate or self._common is None:
            out = objectives.compute(self.name, inputs, validate=True, **self.params, **data)
            if self._common is None:  # the parameters resolve the same every call: once
                merged = OBJECTIVES.resolve(self.name, {**self.params, **data})
                self._common = {k: merged.pop(k) for k in COMMON}
                self._own = {k: v for k, v in merged.items() if k not in data}
            return out.loss, out.metrics
        common = self._common
        assert inputs.behav_logp is None and inputs.ref_logp is None, "the direct call has no correction or KL term"
        log_r = log_ratio(inputs.logp, inputs.prox_logp)
        per_token, metrics = self.entry.fn(inputs, log_r, **self._own, **data)
        if common["entropy_coef"]:
            assert inputs.entropy is not None
            per_token = per_token - common["entropy_coef"] * inputs.entropy
        loss = aggregate(per_token, inputs.mask, common["aggregation"], num_tokens=inputs.num_tokens,
                         num_seqs=inputs.num_seqs, sum_norm_constant=common["sum_norm_constant"],
                         sum_norm_divisor=common["sum_norm_divisor"])
        lr = log_r.detach()
        metrics["approx_kl"] = (lr.exp() - 1.0 - lr).mean()
        if inputs.entropy is not None:
            metrics["entropy"] = inputs.entropy.detach().mean()
        return loss, metrics


def _clip_frac(m: dict[str, torch.Tensor]) -> torch.Tensor:
    """An objective's clip fraction (the sum of its low/high fractions when it reports only those)."""
    if "clip_frac" in m:
        return m["clip_frac"]
    zero = m["approx_kl"].new_zeros(())
    return m.get("clip_frac_low", zero) + m.get("clip_frac_high", zero)


class OnPolicy(Algorithm):
    """Rollout, GAE, the minibatch loop, value loss, checkpoint state and metrics (see the module docstring).

    Declarations: ``critic_heads`` (outputs of the critic; head 0 is V) and ``needs_old_params`` (the
    batch gets ``old_params``, the actor's distribution parameters at the iteration start, pi_theta_k).
    """

    on_policy = True
    critic_heads: ClassVar[int] = 1
    needs_old_params: ClassVar[bool] = False

    @classmethod
    def normalisation(cls, cfg: GymTrainConfig) -> tuple[bool, bool]:
        return cfg.ppo.norm_obs, cfg.ppo.norm_reward

    def __init__(self, cfg: GymTrainConfig, runner: VecRunner) -> None:
        super().__init__(cfg, runner)
        self.p = p = cfg.ppo
        obs_space, act_space = runner.envs.single_observation_space, runner.envs.single_action_space
        assert isinstance(obs_space, spaces.Box)
        self.obs_dim = int(obs_space.shape[0])
        continuous = isinstance(act_space, spaces.Box)
        if isinstance(act_space, spaces.Box):
            self.n_act = int(act_space.shape[0])
        else:
            assert isinstance(act_space, spaces.Discrete)
            self.n_act = int(act_space.n)
        self.actor = Actor(self.obs_dim, self.n_act, continuous, p.hidden, p.activation, p.action_std)
        self.critic = mlp(self.obs_dim, p.hidden, self.critic_heads, p.activation)
        self.flat_params = flatten_parameters([self.actor, self.critic])
        self.opt = torch.optim.Adam([self.flat_params], lr=p.learning_rate, eps=1e-5, fused=True)
        self.policy_objective = RegistryObjective(cfg.objective, {"entropy_coef": p.ent_coef, **p.objective_params})
        self.clip_coef_objective = cfg.objective in CLIP_COEF_OBJECTIVES
        self.gaussian_step = cfg.objective in GAUSSIAN_ONLY  # one fixed-std Gaussian step per sample
        self.fast_loss = torch.compile(self.minibatch_loss) if p.compile else self.minibatch_loss
        self.extra: dict[str, nn.Module] = {}
        self.extra_opt: dict[str, torch.optim.Optimizer] = {}

    def add_part(self, name: str, module: nn.Module, opt: torch.optim.Optimizer | None = None) -> None:
        """Register an extra module (saved with the weights) and its own optimiser (saved with the state)."""
        self.extra[name] = module
        if opt is not None:
            self.extra_opt[name] = opt

    # -- hooks -------------------------------------------------------------------------------------
    def behaviour_policy(self) -> Actor:
        """The policy that acts in the rollout (default: the actor, pi_theta)."""
        return self.actor

    def on_step(self, t: int, obs: list[torch.Tensor], act: list[torch.Tensor], step: Step) -> None:
        """Called after vector step ``t`` of the rollout, with the observations and actions so far (no grad)."""

    def finish_rollout(self, buf: dict[str, torch.Tensor]) -> None:
        """Add extra ``[T, N, ...]`` tensors to the rollout buffer (no grad)."""

    def prepare_batch(self, flat: dict[str, torch.Tensor]) -> None:
        """Edit the flat ``[B, ...]`` batch at the iteration start (no grad): ``obs``, ``act``, ``logp`` (the
        old log-probs the ratio is taken against), ``adv``, ``values``, ``returns``. Default: ``old_params``
        when ``needs_old_params`` or the objective takes Gaussian steps."""
        if self.needs_old_params or self.gaussian_step:
            flat["old_params"] = self.actor(flat["obs"])

    def objective_inputs(
        self, mb: dict[str, torch.Tensor], params: torch.Tensor, values: torch.Tensor
    ) -> dict[str, Any]:
        """Extra keyword inputs of the objective on minibatch ``mb`` (``params``: the actor's output,
        ``values``: the critic's, both with gradient). Default: none."""
        return {}

    def extra_loss(
        self, mb: dict[str, torch.Tensor], values: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """An extra term added to the minibatch loss, and its 0-d metrics (default: none)."""
        return None

    def after_step(self, mb: dict[str, torch.Tensor]) -> None:
        """Called after each optimiser step of the actor-critic on minibatch ``mb``."""

    # -- persistence -------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, **self.extra}

    def state_dict(self) -> dict[str, Any]:
        return {
            "update_idx": self.update_idx,
            "opt": self.opt.state_dict(),
            "extra_opt": {k: o.state_dict() for k, o in self.extra_opt.items()},
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.update_idx = int(s["update_idx"])
        self.opt.load_state_dict(s["opt"])
        for k, o in self.extra_opt.items():
            o.load_state_dict(s["extra_opt"][k])

    def snapshot(self) -> dict[str, Any]:
        """A copy of what an update changes, counters aside: weights, optimiser states, observation statistics."""
        return copy.deepcopy({
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "opt": self.opt.state_dict(),
            "extra_opt": {k: o.state_dict() for k, o in self.extra_opt.items()},
            "obs_rms": self.runner.obs_norm.rms.state_dict(),
        })

    def restore(self, snap: dict[str, Any]) -> None:
        """Roll back to a :meth:`snapshot` (in place: the flat parameter tensor keeps its storage)."""
        for k, m in self.modules().items():
            m.load_state_dict(snap["modules"][k])
        self.opt.load_state_dict(snap["opt"])
        for k, o in self.extra_opt.items():
            o.load_state_dict(snap["extra_opt"][k])
        self.runner.obs_norm.rms.load_state_dict(snap["obs_rms"])

    def act(self, obs: torch.Tensor) -> np.ndarray:
        """Deterministic action (argmax / mean) for evaluation."""
        with torch.no_grad():
            action, _ = self.actor.sample(self.actor(obs), deterministic=True)
        out: np.ndarray = action.numpy()
        return out

    # -- one iteration -----------------------------------------------------------------------------
    def iterate(self) -> dict[str, float]:
        p = self.p
        frac = 1.0 - self.update_idx / self.num_updates
        lr = p.learning_rate * frac if p.anneal_lr else p.learning_rate
        for g in self.opt.param_groups:
            g["lr"] = lr
        clip = p.clip_coef * frac if p.anneal_clip else p.clip_coef
        data = self._collect()
        metrics = self._learn(data, clip)
        self.update_idx += 1
        metrics.update(self.runner.pop_episodes())
        metrics["lr"] = lr
        metrics["clip_coef"] = clip
        return metrics

    def _collect(self) -> dict[str, torch.Tensor]:
        """Roll out ``num_steps`` vector steps; values are computed afterwards in one batched pass."""
        p, runner = self.p, self.runner
        T, N = p.num_steps, runner.envs.num_envs
        policy = self.behaviour_policy()
        obs_l, act_l, logp_l, rew_l, term_l, trunc_l = [], [], [], [], [], []
        final_obs = np.zeros((T, N, self.obs_dim), np.float32)
        with torch.no_grad():
            for t in range(T):
                obs = torch.from_numpy(runner.obs)
                action, logp = policy.sample(policy(obs))
                step = runner.step(action.numpy())
                obs_l.append(obs)
                act_l.append(action)
                logp_l.append(logp)
                rew_l.append(step.reward)
                term_l.append(step.terminated)
                trunc_l.append(step.truncated)
                if step.truncated.any():
                    final_obs[t] = step.final_obs
                self.on_step(t, obs_l, act_l, step)
            truncated = torch.from_numpy(np.stack(trunc_l))
            terminated = torch.from_numpy(np.stack(term_l))
            buf = {
                "obs": torch.stack(obs_l),
                "act": torch.stack(act_l).float(),
                "logp": torch.stack(logp_l),
                "rewards": torch.from_numpy(np.stack(rew_l)),
                "terminated": terminated.float(),
            }
            all_obs = torch.cat([buf["obs"].reshape(T * N, -1), torch.from_numpy(runner.obs)])
            v = self.critic(all_obs)[:, 0].reshape(T + 1, N)
            buf["values"] = v[:T]
            next_values = v[1:]
            if truncated.any():  # bootstrap through time-limit truncation with V(final observation)
                fo = torch.from_numpy(final_obs)[truncated]
                next_values = next_values.clone()
                next_values[truncated] = self.critic(fo)[:, 0]
            self.finish_rollout(buf)
        buf["adv"] = gae_episodic(
            rewards=buf["rewards"],
            values=buf["values"],
            next_values=next_values,
            terminated=terminated,
            dones=terminated | truncated,
            gamma=p.gamma,
            lam=p.gae_lambda,
        )
        buf["returns"] = buf["adv"] + buf["values"]
        return buf

    def minibatch_loss(
        self, mb: dict[str, torch.Tensor], clip: float, norm_adv: bool, validate: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss of one minibatch (policy objective + ``vf_coef`` value loss + :meth:`extra_loss`) and its
        0-d metrics. ``mb`` holds ``obs, act, logp, adv, values, returns, mask`` (``[B, 1]`` ones) and what
        :meth:`prepare_batch` added; ``validate``: the objective's full ``compute`` with input checks."""
        p = self.p
        params = self.actor(mb["obs"])
        values = self.critic(mb["obs"])
        adv = mb["adv"]
        if norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        # the entropy: a diagnostic only (no graph) without an entropy bonus
        logp, ent = self.actor.log_prob_entropy(params, mb["act"], entropy_grad=bool(p.ent_coef))
        prox_logp = mb["logp"]
        kw = self.objective_inputs(mb, params, values)
        if self.clip_coef_objective:
            kw.update(clip_low=clip, clip_high=clip)
        if self.gaussian_step:  # delta_t = 1; log-probs as per-dimension means, as the objective expects
            d = self.n_act
            kw.update(mean=params[:, None, :d], mean_old=mb["old_params"][:, None, :d], step_std=p.action_std)
            logp, prox_logp = logp / d, prox_logp / d
        rows = float(len(logp))  # the mask is all ones: its token and sequence counts, known on the host
        inputs = PolicyLossInputs(logp=logp[:, None], prox_logp=prox_logp[:, None], adv=adv[:, None], mask=mb["mask"],
                                  entropy=ent[:, None], num_tokens=rows, num_seqs=rows)
        pg, m = self.policy_objective(inputs, validate=validate, **kw)
        v_loss = value_loss(values[:, 0], mb["values"], mb["returns"], clip, p.clip_vloss)
        loss = pg + p.vf_coef * v_loss
        stats = {
            "loss/policy": pg.detach(),
            "loss/value": v_loss.detach(),
            "clip_frac": _clip_frac(m),
            "approx_kl": m["approx_kl"],
            "entropy": m["entropy"],
        }
        extra = self.extra_loss(mb, values)
        if extra is not None:
            loss = loss + extra[0]
            stats.update(extra[1])
        return loss, stats

    def _learn(self, buf: dict[str, torch.Tensor], clip: float) -> dict[str, float]:
        p = self.p
        B, mb = p.batch_size, p.minibatch_size
        flat = {k: v.reshape(B, *v.shape[2:]) for k, v in buf.items()}
        with torch.no_grad():
            self.prepare_batch(flat)
        if not self.actor.continuous:
            flat["act"] = flat["act"].long()  # once, not per minibatch in log_prob
        # One minibatch per epoch: no shuffling or gathering, and the advantage is normalised once.
        whole = mb == B
        norm_adv = p.norm_adv and mb > 1
        if whole and norm_adv:
            flat["adv"], norm_adv = (flat["adv"] - flat["adv"].mean()) / (flat["adv"].std() + 1e-8), False
        flat["mask"] = torch.ones(B, 1)
        grad = self.flat_params.grad
        assert grad is not None
        names: tuple[str, ...] = ()
        rows: list[torch.Tensor] = []  # each minibatch's metrics stacked into one tensor, reduced once
        for _ in range(p.update_epochs):
            perm = None if whole else torch.randperm(B)
            kl_epoch = torch.zeros(())
            for start in range(0, B - mb + 1, mb):
                batch = flat if perm is None else {k: v[perm[start : start + mb]] for k, v in flat.items()}
                validate = not rows  # the iteration's first minibatch: the objective's full compute and checks
                loss, stats = (self.minibatch_loss if validate else self.fast_loss)(batch, clip, norm_adv, validate)
                names = tuple(stats)
                rows.append(torch.stack(list(stats.values())))
                kl_epoch = stats["approx_kl"]
                grad.zero_()
                loss.backward()
                with torch.no_grad():  # clip_grad_norm_'s rule on the one flat gradient
                    grad.mul_((p.max_grad_norm / (torch.linalg.vector_norm(grad) + 1e-6)).clamp_(max=1.0))
                self.opt.step()
                self.after_step(batch)
            if p.target_kl is not None and float(kl_epoch) > p.target_kl:
                break
        # one device-to-host transfer for the iteration's diagnostics (means over minibatches)
        means = torch.stack(rows).double().mean(0).tolist()
        metrics = dict(zip(names, means, strict=True))
        var_y, var_res = torch.stack([flat["returns"].var(), (flat["returns"] - flat["values"]).var()]).tolist()
        metrics["explained_variance"] = float("nan") if var_y == 0 else 1.0 - var_res / var_y
        return metrics
