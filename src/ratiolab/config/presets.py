"""Named language-model presets (``ratiolab train --preset NAME``): a published recipe as ``--set`` assignments
onto the :class:`~ratiolab.config.train.TrainConfig` defaults; further ``--set`` flags override them.

``ppo-max`` is PPO-max as the MOSS-RLHF script ``train_ppo_en.sh`` configures it ("Secrets of RLHF Part I",
arXiv 2307.04964; docs/methods/rlhf.md §8), one assignment per ingredient (numbered as in that section):

1. reward scaling by the running std only (``algo.value.reward_scaling``; no centring, ``reward_norm`` false);
2. reward clipping available, off (``algo.value.reward_clip`` 0);
3. KL as a per-token reward, beta 0.01 (``algo.kl_placement`` ``reward_token``, ``algo.kl_coef``);
4. GAE with gamma 1, lambda 0.95 (``algo.advantage``, ``algo.advantage_params``);
5. a critic of its own (``algo.value.model`` ``separate``), initialised from the policy: the script initialises
   it from the reward model, which a verifiable task does not have [inferred];
6. value clip 0.2, ``0.5 max(...)`` token mean, weight 1 (``algo.value.value_clip``, ``value_coef``);
7. policy clip 0.2, token mean (``algo.objective`` ``ppo``, ``algo.objective_params``);
8. global gradient-norm clip 1.0 (``algo.grad_clip``, and ``algo.value.grad_clip``);
9. a small experience buffer: one response per prompt, 28 per step in two minibatches of 14 (the script's
   2 rollouts x 2 prompts x 7 processes, and batch 2 x 7 processes) [inferred mapping];
10. advantage whitening and advantage clip off, no entropy bonus, no PPO-ptx (``algo.value.whiten``,
    ``algo.value.adv_clip``, ``algo.entropy_coef``);
11. Adam (0.9, 0.95), eps 1e-6 (``algo.adam_beta2``, ``algo.adam_eps``); the critic's learning rate 3x the
    actor's (1.5e-6 vs 5e-7 in the script; here 3e-4 vs the track's 1e-4, scaled to tiny models); sampling at
    temperature 0.8, top-p 0.9, scored on the kept support (``sampling.logprob_support`` ``kept``: the learner's
    log-probs are of the distribution sampled from).

Not reproduced: the inverse-sqrt learning-rate schedule (the track warms up linearly, then holds), the
repetition penalty 1.1 (the sampler has none) and the 512-token responses (``sampling.max_new_tokens`` is the
task's). The paper's own component list (score normalisation *and* clipping, advantage whitening) is
[unverified]; ``--set algo.value.reward_norm=true --set algo.value.reward_clip=5 --set algo.value.whiten=true``
turns those on.
"""

from __future__ import annotations

from ratiolab.config import ConfigError, override
from ratiolab.config.train import TrainConfig

PRESETS: dict[str, tuple[str, ...]] = {
    "ppo-max": (
        "algo.value.reward_scaling=true", "algo.value.reward_norm=false",  # 1
        "algo.value.reward_clip=0",  # 2
        "algo.kl_placement=reward_token", "algo.kl_coef=0.01",  # 3
        "algo.advantage=gae", "algo.advantage_params={gamma: 1.0, lam: 0.95}",  # 4
        "algo.value.model=separate",  # 5
        "algo.value.value_clip=0.2", "algo.value.value_coef=1.0",  # 6
        "algo.objective=ppo", "algo.objective_params={clip_low: 0.2, clip_high: 0.2, aggregation: token-mean}",  # 7
        "algo.grad_clip=1.0", "algo.value.grad_clip=1.0",  # 8
        "algo.samples_per_prompt=1", "algo.prompts_per_step=28", "algo.minibatches=2",  # 9
        "algo.value.whiten=false", "algo.value.adv_clip=0", "algo.entropy_coef=0",  # 10
        "algo.adam_beta2=0.95", "algo.adam_eps=1e-6", "algo.value.lr=3e-4",  # 11
        "sampling.temperature=0.8", "sampling.top_p=0.9", "sampling.logprob_support=kept",  # 11
    ),
}


def preset(name: str, base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with preset ``name``'s assignments applied."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not a language-model preset; valid presets: {sorted(PRESETS)} "
                          "(classic-control presets need --env)")
    return override(TrainConfig() if base is None else base, PRESETS[name])
