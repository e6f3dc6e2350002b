"""Named, tuned configurations (``ratiolab train --preset NAME``); values are library settings.

- ``cartpole-ppo-zoo``: rl-baselines3-zoo's CartPole-v1 PPO hyperparameters (8 envs x 32 steps,
  batch 256, 20 epochs, gamma 0.98, lambda 0.8, linear lr 1e-3 and clip 0.2, no entropy bonus,
  unclipped value loss as in SB3).
- ``cartpole-pqn``: PQN tuned here for sample efficiency on CartPole-v1 (16 envs x 16 steps, 4 x 4
  minibatches, lr 2.5e-3, Q(0.8), epsilon 1 -> 0.02 over 25% of 80k steps, 64-64 LayerNorm);
  reached a 20-episode deterministic return >= 475 in 9-14k steps over seeds 1-5.
- ``halfcheetah-ppo-cleanrl``: CleanRL's ``ppo_continuous_action.py`` on HalfCheetah-v5 (1 env x 2048
  steps, 32 minibatches, 10 epochs, lr 3e-4 annealed, observation and reward normalisation, no entropy
  bonus, 1M steps); needs the ``mujoco`` extra. ``benchmarks/bench_mujoco.py`` runs it for PPO, MDPO, BPO.
"""

from __future__ import annotations

from ratiolab.config import from_dict, to_dict
from ratiolab.gym.config import GymTrainConfig, PPOConfig, PQNConfig

PRESETS: dict[str, GymTrainConfig] = {
    "cartpole-ppo-zoo": GymTrainConfig(
        env_id="CartPole-v1",
        algo="ppo",
        total_steps=100_000,
        ppo=PPOConfig(
            num_envs=8,
            num_steps=32,
            num_minibatches=1,
            update_epochs=20,
            gamma=0.98,
            gae_lambda=0.8,
            learning_rate=1e-3,
            anneal_lr=True,
            clip_coef=0.2,
            anneal_clip=True,
            ent_coef=0.0,
            clip_vloss=False,
        ),
    ),
    "halfcheetah-ppo-cleanrl": GymTrainConfig(
        env_id="HalfCheetah-v5",
        algo="ppo",
        total_steps=1_000_000,
        ppo=PPOConfig(
            num_envs=1,
            num_steps=2048,
            num_minibatches=32,
            update_epochs=10,
            learning_rate=3e-4,
            ent_coef=0.0,
            norm_obs=True,
            norm_reward=True,
        ),
    ),
    "cartpole-pqn": GymTrainConfig(
        env_id="CartPole-v1",
        algo="pqn",
        total_steps=80_000,
        pqn=PQNConfig(
            num_envs=16,
            num_steps=16,
            num_minibatches=4,
            update_epochs=4,
            learning_rate=2.5e-3,
            q_lambda=0.8,
            exploration_fraction=0.25,
            end_e=0.02,
            hidden=[64, 64],
        ),
    ),
}


def preset(name: str) -> GymTrainConfig:
    """A fresh copy of preset ``name`` (``ValueError`` listing the valid names)."""
    if name not in PRESETS:
        raise ValueError(f"unknown gym preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return from_dict(GymTrainConfig, to_dict(PRESETS[name]))
