"""Classic-control track: gymnasium vector envs, MLP policies, PPO/MDPO/BPO/PROPS/PDPPO/PQN.

``train(cfg, run_dir, resume=False, progress=None)`` and ``evaluate(run_dir)`` are what the CLI
calls; ``GymTrainConfig`` is the typed config and ``scale_envs`` the many-env co-scaling helper.
"""

from ratiolab.gym.config import GymTrainConfig, PPOConfig, PQNConfig
from ratiolab.gym.coscale import scale_envs
from ratiolab.gym.envs import EnvError
from ratiolab.gym.inventory import register as register_inventory
from ratiolab.gym.presets import PRESETS, preset
from ratiolab.gym.train import EvalResult, GymResult, evaluate, train

register_inventory()

__all__ = [
    "PRESETS",
    "EnvError",
    "EvalResult",
    "GymResult",
    "GymTrainConfig",
    "PPOConfig",
    "PQNConfig",
    "evaluate",
    "preset",
    "scale_envs",
    "train",
]
