"""Typed configuration of a language-model RL run (``ratiolab train``); YAML and ``--set`` map onto it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from ratiolab import advantages, objectives, tasks
from ratiolab import kl as kl_mod
from ratiolab.config import ConfigError, check_fields, check_range
from ratiolab.config.async_rl import SYNC_STRATEGIES, AsyncConfig
from ratiolab.correction.discrepancy import apply_spec
from ratiolab.objectives.grpo_guard import GAUSSIAN_ONLY
from ratiolab.policies.model import PRESETS
from ratiolab.rewards.calibration import CalibrationConfig
from ratiolab.trackers import check_trackers

KlPlacement = Literal["none", "loss", "reward_token", "reward_seq"]


@dataclass(frozen=True)
class TaskConfig:
    """The verifiable task: a registered name (``ratiolab.tasks``) and its constructor parameters
    (empty: the task's own defaults, e.g. arithmetic level 2; set them as a whole,
    ``task.params={level: 3}``)."""

    name: str = "arithmetic"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyConfig:
    """Where the policy comes from.

    ``model``: a local Hugging Face checkpoint folder (model + tokenizer, ``from_pretrained``).
    Without it, the task's demonstrations pre-train a ``preset`` model for ``pretrain_steps``
    steps of ``pretrain_batch_size`` problems at peak lr ``pretrain_lr`` (warmup, then cosine decay),
    from the run's ``seed`` (initialisation and problems), cached under ``cache_dir`` by all of these
    so later runs reuse it. ``pretrain_stop_pass1`` (default ``None``: all steps) stops pre-training at the
    first check (every ``pretrain_check_every`` steps, on train-split problems, never the test split) whose
    pass@1 reaches it, so the base lands near that accuracy whatever the seed or CPU
    (:class:`ratiolab.policies.pretrain.PretrainConfig`); ``pretrain_steps`` is then the cap.
    """

    model: str | None = None
    preset: str = "tiny"
    pretrain_steps: int = 600
    pretrain_lr: float = 3e-3
    pretrain_batch_size: int = 64
    pretrain_stop_pass1: float | None = None
    pretrain_check_every: int = 10
    cache_dir: str = ".cache/ratiolab"


@dataclass(frozen=True)
class SamplingConfig:
    """How the engine samples rollouts.

    ``engine_dtype`` bfloat16 gives the engine bf16-rounded weights, a real training-inference
    mismatch (``w_disc != 1`` at staleness 0); ``engine_compute`` float32 computes with them in
    fp32 (this CPU has no bf16 units: native bf16 is 3-4x slower, ``benchmarks/bench_sampler.py``).
    ``backend``: ``auto`` (the fused decode loop where the family has one), ``fused``, ``compiled`` (``fused``
    with a ``torch.compile``d decode step: faster steps after tens of seconds of compilation, paid
    twice), ``loop`` (any HF causal LM: its own forward with a KV cache) or ``generate`` (HF ``generate``;
    no mid-generation weight swaps). Families: Llama and Qwen2 with full attention run the fused sampler;
    GPT-2 (and Qwen2 with a sliding window, or any other family) falls back to ``loop``; a model whose forward
    takes no ``position_ids`` (Bloom's ALiBi) falls back to ``generate``. Each fallback logs one line
    (docs/models-and-data.md).

    ``logprob_support``: the support the learner scores ``logp``/``prox_logp``/``ref_logp`` on. The engine's
    ``behav_logp`` is always the log-prob of the distribution sampled from (temperature, top-k, top-p,
    renormalised on the kept tokens; vLLM's ``logprobs_mode="processed_logprobs"``, as opposed to
    ``raw_logprobs`` before any processing). ``full`` (default): the learner applies the temperature only,
    over the whole vocabulary, so with ``top_k``/``top_p`` on, ``w_disc`` carries a systematic support bias
    (``log w_disc <= 0`` on every token); this is what verl and slime do (processed rollout log-probs
    against full-vocabulary trainer log-probs: verl issue #6240; vllm-project/vime PR #73 warns of it).
    ``kept``: the learner applies the same truncation to its own logits and renormalises, so all three are
    log-probs of truncated distributions and ``w_disc`` measures only the numeric discrepancy (an fp32
    engine gives ``w_disc == 1``); the entropy is that of the truncated distribution. The learner recomputes
    the kept set from its own logits (the engine does not record it, unlike DeepSeek-V3.2's "keep sampling
    mask", arXiv 2512.02556 §3.1); a sampled token outside it joins the support (as prime-rl's trainer-side
    top-k/top-p replay restores the label's logit) and is counted in ``support/outside_frac``.
    Without ``top_k``/``top_p`` both are the same.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 8
    engine_dtype: Literal["float32", "bfloat16"] = "float32"
    engine_compute: Literal["native", "float32"] = "float32"
    backend: Literal["auto", "fused", "compiled", "loop", "generate"] = "auto"
    logprob_support: Literal["full", "kept"] = "full"

    def __post_init__(self) -> None:
        if self.logprob_support not in ("full", "kept"):
            raise ValueError(
                f"sampling.logprob_support = {self.logprob_support!r} is not one of ['full', 'kept']; use full "
                "(learner log-probs over the whole vocabulary) or kept (renormalised on the top-k/top-p support)"
            )


@dataclass(frozen=True)
class PrefixConfig:
    """Off-policy prefixes (PrefixRL, arXiv 2601.18795, docs/methods/rlhf.md §12; [secondary source]), for any
    objective.

    With probability ``prob`` a training problem becomes ``prompt + y*_{1:h}``: its prompt followed by the
    first ``h = clamp(floor(fraction L), 1, L - 1)`` tokens of the task's demonstration y* (L tokens; none
    when L < 2). All samples of the problem continue the same prefix; the prefix tokens are context (not
    sampled, not in the loss mask, not importance-weighted) and the verifier scores prefix + completion.
    ``prob = 0`` (default) turns it off; ``fraction`` 0.5 is [inferred] (the paper's length schedule is not
    published).
    """

    prob: float = 0.0
    fraction: float = 0.5


@dataclass(frozen=True)
class RemixConfig:
    """ReMix's learner schedule (arXiv 2507.06892, docs/methods/ratio-objectives.md §11), used when
    ``algo.objective = remix``.

    Each step, with probability ``replay_prob`` the learner trains on a past batch drawn uniformly from
    the last ``window`` fresh batches (advantages as computed at generation) instead of sampling a
    fresh one; every batch gets ``utd`` times ``algo.epochs`` passes (the update-to-data ratio). After
    ``reincarnation_step`` learner steps the KL base becomes the current policy and training turns plain
    on-policy (no replay, ``utd`` 1). Defaults p = 0.4, N = 2, m = 2, T = 50 ([secondary source]).
    """

    replay_prob: float = 0.4
    window: int = 2
    utd: int = 2
    reincarnation_step: int = 50


@dataclass(frozen=True)
class CriticConfig:
    """SAFE's double soft-min critic (ryyzn9/SAFE, docs/methods/ratio-objectives.md §12), used when
    ``algo.objective`` is
    ``safe`` or ``safe_fixed``: it replaces ``algo.advantage``.

    ``V = softmin_alpha(v1, v2)``; value loss ``value_coef * 0.5 [Huber_delta(V, R) + Huber(V_clip, R)]``
    with ``V_clip`` within ``value_clip`` of the scoring-time V, added to the policy loss; the critic has
    its own AdamW (``lr``; ``None`` = ``algo.lr``, the script's synchronised rates) and grad-norm clip.
    """

    alpha: float = 0.3
    huber_delta: float = 0.5
    value_clip: float = 0.2
    value_coef: float = 0.5
    grad_clip: float = 0.5
    lr: float | None = None


@dataclass(frozen=True)
class ValueConfig:
    """The token-level value head (:mod:`ratiolab.learner.value_head`), used when ``algo.advantage`` is a
    value-based estimator (``gae``, ``egae``; docs/methods/baselines.md §4-§6, rlhf.md §7-§8).

    ``model``: ``shared`` puts a linear head on the policy's final hidden states (the LM head's input), its
    loss added to the policy loss so the value gradient also reaches the trunk (``detach_trunk`` stops it);
    ``separate`` trains a copy of the initial policy's trunk with its own head (the critic initialised from
    the policy; MOSS-RLHF initialises it from the reward model, which verifiable tasks do not have). The
    head starts at zero (V = 0). Loss: ``value_coef * 0.5 * max((V - R)^2, (clip(V, V_old +- value_clip) - R)^2)``,
    a token mean over the minibatch (``value_clip`` ``None``: unclipped); own AdamW (``lr``, ``None`` =
    ``algo.lr``; ``algo.adam_beta2``/``adam_eps``) and grad-norm clip ``grad_clip``. Targets ``R = A + V_old``
    from the advantage's lambda, or from ``target_lam`` (e.g. 1: Monte-Carlo targets, T-PPO's critic).

    The outcome score is shaped before the advantages (PPO-max's reward scaling, arXiv 2307.04964):
    ``reward_scaling`` divides it by the running std (Chan's parallel update of the batch mean and biased
    variance from mean 0, var 1, count 1e-24; std with the N / (N - 1) correction), ``reward_norm`` also
    subtracts the running mean, ``reward_clip`` > 0 clips the result to ``+-reward_clip``. After GAE,
    ``whiten`` whitens the advantages over the batch's valid tokens (population variance, eps 1e-8) and
    ``adv_clip`` > 0 clips them to ``+-adv_clip``.
    """

    model: Literal["shared", "separate"] = "shared"
    value_coef: float = 0.5
    value_clip: float | None = 0.2
    lr: float | None = None
    grad_clip: float = 1.0
    detach_trunk: bool = False
    target_lam: float | None = None
    reward_scaling: bool = False
    reward_norm: bool = False
    reward_clip: float = 0.0
    whiten: bool = True
    adv_clip: float = 0.0


@dataclass(frozen=True)
class AlgoConfig:
    """The RL update.

    ``objective``/``advantage`` are registry names (``ratiolab list objectives|advantages``) with
    extra parameters in ``objective_params``/``advantage_params``. Each step samples
    ``prompts_per_step * samples_per_prompt`` responses and makes ``epochs`` passes over them in
    ``minibatches`` optimiser steps, each accumulated over ``micro_batches``; the learning rate
    rises linearly to ``lr`` over the first ``warmup_steps`` optimiser steps (defaults 1e-4 and 10, the
    demo's: at 1e-3 a fresh AdamW's first, sign-like steps collapse the pre-trained tiny policy, held-out
    accuracy 36-50 % -> 6-9 % in 40 steps). ``kl_placement``
    puts ``kl_coef * KL(pi || ref)`` into the loss (estimator ``kl_kind``), the per-token reward
    (token-level estimators only) or the sequence reward. ``kl_controller`` ``fixed`` keeps ``kl_coef``;
    ``adaptive`` starts from it and, after each batch, multiplies it by
    ``1 + clip(KL / kl_target - 1, -0.2, 0.2) * B / kl_horizon`` (Ziegler et al., arXiv 1909.08593; ``B`` the
    batch's sequences, once per batch as verl and TRL do), where KL is the batch's token-mean k3 estimate of
    KL(pi_old || ref) (``kl_ref/k3``). Defaults ``kl_target = 0.1``, ``kl_horizon = 10000`` are verl's
    (``target_kl``, ``horizon``); TRL's ``target = 6`` measures a per-sequence summed KL, not this token mean.
    ``remix`` and ``critic`` configure the
    learner-side parts of the ``remix`` and ``safe``/``safe_fixed`` objectives, ``value`` the value head of the
    value-based advantages (``gae``, ``egae``). ``adam_beta2`` and ``adam_eps`` are the policy's (and the value
    head's) AdamW constants (defaults PyTorch's 0.999 and 1e-8; PPO-max: 0.95 and 1e-6).

    DAPO (arXiv 2503.14476) parts, for any objective: ``dynamic_sampling`` drops prompt groups whose
    rewards are all equal and samples further groups, up to ``dynamic_sampling_rounds`` generation rounds
    per step, until ``prompts_per_step`` groups are informative (synchronous loop only; the batch is topped
    up with dropped groups when the rounds run out). ``overlong_buffer`` = L_cache > 0 adds the soft
    overlong punishment ``min(-(|y| - (L_max - L_cache)) / L_cache, 0) * overlong_penalty`` to each
    reward, with ``L_max`` the maximum response length. ``experimental`` admits objectives whose form is
    inferred rather than published (``r2vpo``).
    """

    objective: str = "grpo"
    objective_params: dict[str, Any] = field(default_factory=dict)
    advantage: str = "grpo"
    advantage_params: dict[str, Any] = field(default_factory=dict)
    prompts_per_step: int = 32
    samples_per_prompt: int = 8
    epochs: int = 1
    minibatches: int = 2
    micro_batches: int = 1
    lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    kl_placement: KlPlacement = "none"
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    kl_controller: Literal["fixed", "adaptive"] = "fixed"
    kl_target: float = 0.1
    kl_horizon: float = 10000.0
    entropy_coef: float = 0.0
    dynamic_sampling: bool = False
    dynamic_sampling_rounds: int = 3
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0
    experimental: bool = False
    remix: RemixConfig = field(default_factory=RemixConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    value: ValueConfig = field(default_factory=ValueConfig)


@dataclass(frozen=True)
class RewardConfig:
    """Where the RL reward comes from.

    ``models`` empty (the default): the task's exact verifier. Otherwise reward-model folders written by
    ``ratiolab rm train`` (``--reward model:DIR[,DIR...]``): the RM score replaces the verifier's reward in
    the advantages and the verifier's stays the gold score (``gold_reward``, and ``reward/gap`` = RM - gold),
    so over-optimisation of the RM shows. Several folders form an ensemble combined by ``ensemble``: ``mean``,
    ``wco`` (the minimum) or ``uwo`` (``mean - uwo_coef * Var``, unbiased variance; Coste et al., arXiv
    2310.02743). A non-finite RM score gives that response reward 0 and no tokens in the loss, counted in
    ``reward/nonfinite``. ``calibration`` applies PPO-C (arXiv 2410.09724) to the RM scores per batch, with
    ``calibration_params`` for ``rewards.CalibrationConfig`` (defaults: the released scripts; its running
    average is checkpointed). The RMs must use the policy's tokenizer.
    """

    models: tuple[str, ...] = ()
    ensemble: Literal["mean", "wco", "uwo"] = "mean"
    uwo_coef: float = 0.1
    calibration: bool = False
    calibration_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Checks that need no file (the folders are checked when the run loads them)."""
        if not self.models:
            changed = [f"reward.{f.name}" for f in fields(RewardConfig)
                       if f.name != "models" and getattr(self, f.name) != getattr(RewardConfig(), f.name)]
            if changed:
                raise ConfigError(f"{', '.join(changed)} set without reward.models: the verifier's reward ignores "
                                  "them; give the reward-model folders (--reward model:DIR) or remove them")
            return
        if any(not m.strip() for m in self.models):
            raise ConfigError("reward.models holds an empty folder name; give the folders of trained reward models")
        if self.ensemble == "uwo" and len(self.models) < 2:
            raise ConfigError("reward.ensemble = uwo needs >= 2 reward models (a variance over members); give more "
                              "folders or use mean")
        check_range("reward.uwo_coef", self.uwo_coef, "[0, inf)")
        try:
            CalibrationConfig(**self.calibration_params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"reward.calibration_params: {err}") from err
        if self.calibration_params and not self.calibration:
            raise ConfigError("reward.calibration_params set without reward.calibration=true; enable it or remove them")


@dataclass(frozen=True)
class TrainConfig:
    """A complete run: ``steps`` RL steps, held-out evaluation every ``eval_every`` steps on
    ``eval_size`` test problems (greedy, plus pass@1 over ``eval_samples`` samples per problem
    when > 0), a checkpoint every ``checkpoint_every`` steps, in ``run_dir`` (``None``: a new
    ``runs/<objective>-<task>-<YYYYmmdd-HHMMSS>``); ``async_rl`` switches to the asynchronous actor/learner
    system; ``log`` names the experiment trackers that also receive every logged row (``tensorboard``,
    ``wandb``, ``mlflow``: :mod:`ratiolab.trackers`); ``reward`` says where the reward comes from (the verifier,
or reward models)."""

    task: TaskConfig = field(default_factory=TaskConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    steps: int = 40
    seed: int = 0
    eval_every: int = 10
    eval_size: int = 200
    eval_samples: int = 0
    checkpoint_every: int = 10
    run_dir: str | None = None
    threads: int = 0
    async_rl: AsyncConfig = field(default_factory=AsyncConfig)
    log: tuple[str, ...] = ()
    reward: RewardConfig = field(default_factory=RewardConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)

    def validate(self) -> None:
        """Check what the dataclass types cannot, before any work or file is made."""
        check_fields(self)  # types and finite numbers, for a config built in Python
        check_trackers(self.log, packages=True)
        a = self.algo
        if a.objective in GAUSSIAN_ONLY:
            raise ConfigError(f"algo.objective = {a.objective!r} is defined only for Gaussian policies (a continuous "
                              "gymnasium env: ratiolab train --env Pendulum-v1 ...); pick a token-level objective")
        if self.policy.preset not in PRESETS:
            raise ConfigError(f"policy.preset = {self.policy.preset!r} is not one of {list(PRESETS)}")
        _positive("policy.pretrain_steps", self.policy.pretrain_steps)
        check_range("policy.pretrain_lr", self.policy.pretrain_lr, "(0, inf)")
        if self.policy.pretrain_stop_pass1 is not None:
            check_range("policy.pretrain_stop_pass1", self.policy.pretrain_stop_pass1, "(0, 1]",
                        "the train-split pass@1 that ends pre-training; unset it to run all pretrain_steps")
        _positive("policy.pretrain_check_every", self.policy.pretrain_check_every)
        if self.run_dir is not None and not self.run_dir.strip():
            raise ConfigError("run_dir is empty; give the folder of the run, e.g. run_dir=runs/train, or leave it "
                              "unset for a timestamped folder under runs/")
        self.async_rl.validate()
        self.async_rl.check_binding(a.objective)
        self.reward.validate()
        if not self.async_rl.enabled:
            sync_ok = {"enabled"} | ({"old_logits"} if self.async_rl.old_logits in SYNC_STRATEGIES else set())
            changed = [f"async_rl.{f.name}" for f in fields(AsyncConfig)
                       if f.name not in sync_ok and getattr(self.async_rl, f.name) != getattr(AsyncConfig(), f.name)]
            if changed:
                raise ConfigError(f"{', '.join(changed)} set without async_rl.enabled=true (--async): the synchronous "
                                  "loop ignores them; enable asynchronous training or remove them")
        for name, value in (("algo.kl_coef", a.kl_coef), ("algo.entropy_coef", a.entropy_coef),
                            ("algo.weight_decay", a.weight_decay), ("algo.overlong_penalty", a.overlong_penalty)):
            if not value >= 0:
                raise ConfigError(f"{name} = {value} must be >= 0 (a negative coefficient rewards what it should cost)")
        for key in ("eps", "std_ddof"):
            if key in a.advantage_params and not a.advantage_params[key] >= 0:
                raise ConfigError(f"algo.advantage_params.{key} = {a.advantage_params[key]} must be >= 0")
        _positive("algo.dynamic_sampling_rounds", a.dynamic_sampling_rounds)
        check_range("prefix.prob", self.prefix.prob, "[0, 1]", "the share of training problems given a prefix")
        check_range("prefix.fraction", self.prefix.fraction, "(0, 1)", "the share of the demonstration's tokens")
        _positive("sampling.max_new_tokens", self.sampling.max_new_tokens)
        if a.dynamic_sampling and self.async_rl.enabled:
            raise ConfigError("algo.dynamic_sampling runs in the synchronous loop only; unset it or async_rl.enabled")
        if not 0 <= a.overlong_buffer < self.sampling.max_new_tokens:
            raise ConfigError(f"algo.overlong_buffer = {a.overlong_buffer} must be in [0, sampling.max_new_tokens = "
                              f"{self.sampling.max_new_tokens}) (0 = no overlong shaping)")
        sp = self.sampling
        if not sp.temperature > 0:
            raise ConfigError(f"sampling.temperature = {sp.temperature} must be > 0 (the learner scores at it)")
        if not 0.0 < sp.top_p <= 1.0:
            raise ConfigError(f"sampling.top_p = {sp.top_p} must be in (0, 1] (1 = no nucleus truncation)")
        if sp.top_k < 0:
            raise ConfigError(f"sampling.top_k = {sp.top_k} must be >= 0 (0 = no top-k truncation)")
        _positive("steps", self.steps)
        _positive("eval_every", self.eval_every)
        _positive("eval_size", self.eval_size)
        if self.eval_samples < 0:
            raise ConfigError("eval_samples must be >= 0 (0: greedy evaluation only)")
        _positive("checkpoint_every", self.checkpoint_every)
        _positive("algo.prompts_per_step", a.prompts_per_step)
        _positive("algo.samples_per_prompt", a.samples_per_prompt)
        _positive("algo.epochs", a.epochs)
        _positive("algo.minibatches", a.minibatches)
        _positive("algo.micro_batches", a.micro_batches)
        if self.async_rl.partial_rollouts and self.async_rl.enabled and self.sampling.backend == "generate":
            raise ConfigError(
                "sampling.backend = generate cannot swap weights mid-generation; set async_rl.partial_rollouts=false "
                "or sampling.backend=auto"
            )
        if self.threads < 0:
            raise ConfigError(f"threads = {self.threads}: use 0 (torch default) or a positive count")
        if a.prompts_per_step % (a.minibatches * a.micro_batches):
            raise ConfigError(
                f"algo.minibatches x algo.micro_batches = {a.minibatches * a.micro_batches} must divide "
                f"algo.prompts_per_step = {a.prompts_per_step} (minibatches hold whole prompt groups)"
            )
        if a.lr <= 0:
            raise ConfigError(f"algo.lr = {a.lr} must be > 0")
        if a.warmup_steps < 0:
            raise ConfigError(f"algo.warmup_steps = {a.warmup_steps} must be >= 0")
        if a.grad_clip <= 0:
            raise ConfigError(f"algo.grad_clip = {a.grad_clip} must be > 0")
        if a.kl_kind not in kl_mod.KINDS:
            raise ConfigError(f"algo.kl_kind = {a.kl_kind!r} is not one of {list(kl_mod.KINDS)}")
        if (a.kl_placement == "none") != (a.kl_coef == 0.0):
            raise ConfigError(
                f"algo.kl_placement = {a.kl_placement!r} with algo.kl_coef = {a.kl_coef}: set both "
                "(e.g. kl_placement=loss, kl_coef=0.04) or neither"
            )
        if a.kl_controller == "adaptive" and a.kl_placement == "none":
            raise ConfigError("algo.kl_controller = adaptive needs a KL term: set algo.kl_placement and algo.kl_coef "
                              "(its starting value), e.g. kl_placement=loss, kl_coef=0.05")
        for name in ("kl_target", "kl_horizon"):
            value = getattr(a, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"algo.{name} = {value!r} must be a finite number > 0")
            if a.kl_controller == "fixed" and value != getattr(AlgoConfig(), name):
                raise ConfigError(f"algo.{name} is set but algo.kl_controller = fixed ignores it; "
                                  "set algo.kl_controller=adaptive or remove it")
        token_level = sorted(e.name for e in advantages.ADVANTAGES if "kl" in e.inputs)
        if a.kl_placement == "reward_token" and a.advantage not in token_level:
            raise ConfigError(
                f"algo.kl_placement = reward_token needs a token-level advantage that takes the per-token KL "
                f"({', '.join(token_level)}), not {a.advantage!r}; use reward_seq or loss"
            )
        if not 0.0 <= a.remix.replay_prob < 1.0:
            raise ConfigError(f"algo.remix.replay_prob = {a.remix.replay_prob} must be in [0, 1)")
        _positive("algo.remix.window", a.remix.window)
        _positive("algo.remix.utd", a.remix.utd)
        if a.remix.reincarnation_step < 0:
            raise ConfigError(f"algo.remix.reincarnation_step = {a.remix.reincarnation_step} must be >= 0")
        c = a.critic
        for name, value in (("alpha", c.alpha), ("huber_delta", c.huber_delta), ("value_clip", c.value_clip),
                            ("grad_clip", c.grad_clip), ("lr", 1.0 if c.lr is None else c.lr)):
            if not value > 0:
                raise ConfigError(f"algo.critic.{name} = {value} must be > 0")
        if c.value_coef < 0:
            raise ConfigError(f"algo.critic.value_coef = {c.value_coef} must be >= 0")
        try:
            params = objectives.OBJECTIVES.resolve(a.objective, a.objective_params)
        except ValueError as err:
            raise ConfigError(f"algo.objective / algo.objective_params: {err}") from err
        if params.get("correction") is not None:
            try:  # a dry run on one token resolves the kind(s) and their parameters
                apply_spec(params["correction"], torch.ones(1, 1), torch.ones(1, 1))
            except (ValueError, TypeError) as err:
                raise ConfigError(f"algo.objective_params.correction: {err}") from err
        if objectives.OBJECTIVES.get(a.objective).experimental and not a.experimental:
            raise ConfigError(f"algo.objective = {a.objective!r} is experimental (its form is inferred, its constants "
                              "unverified); set algo.experimental=true to run it")
        try:
            estimator = advantages.ADVANTAGES.get(a.advantage)
        except ValueError as err:
            raise ConfigError(f"algo.advantage: {err}") from err
        if self.reward.models:
            if a.dynamic_sampling:
                raise ConfigError("algo.dynamic_sampling filters groups on the verifier's reward, the gold score a "
                                  "reward-model run must not train on; unset it or reward.models")
            if "greedy_rewards" in estimator.inputs:
                raise ConfigError(f"algo.advantage = {a.advantage} takes the verifier's greedy rewards as its "
                                  "baseline, not reward-model scores; pick another advantage or unset reward.models")
        _check_value(a.value)
        check_range("algo.adam_beta2", a.adam_beta2, "[0, 1)")
        check_range("algo.adam_eps", a.adam_eps, "(0, inf)")
        try:
            tasks.get(self.task.name, **self.task.params)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"task: {err}; check task.name and task.params") from err


def _check_value(v: ValueConfig) -> None:
    """The value head's ranges (checked whatever the advantage, so a typo fails before a run)."""
    check_range("algo.value.value_coef", v.value_coef, "[0, inf)")
    check_range("algo.value.grad_clip", v.grad_clip, "(0, inf)")
    for name in ("value_clip", "lr"):
        value = getattr(v, name)
        if value is not None:
            check_range(f"algo.value.{name}", value, "(0, inf)", "or null: none")
    if v.target_lam is not None:
        check_range("algo.value.target_lam", v.target_lam, "[0, 1]", "or null: the advantage's lam")
    check_range("algo.value.reward_clip", v.reward_clip, "[0, inf)", "0: off")
    check_range("algo.value.adv_clip", v.adv_clip, "[0, inf)", "0: off")
    if v.reward_norm and not v.reward_scaling:
        raise ConfigError("algo.value.reward_norm centres the running-std scaling: set algo.value.reward_scaling=true "
                          "too, or unset reward_norm")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} = {value} must be a positive integer")
