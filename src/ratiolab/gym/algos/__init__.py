"""The classic-control algorithms, one file each; importing this package registers them in
:data:`ratiolab.gym.algorithm.ALGOS` (the on-policy ones subclass :class:`ratiolab.gym.onpolicy.OnPolicy`).
The imports run in the order the table lists the algorithms."""

# ruff: noqa: I001
from ratiolab.gym.algorithm import ALGOS, Algorithm, algo_class, register
from ratiolab.gym.algos import ppo, mdpo, bpo, props, pdppo
from ratiolab.gym import pqn, mdpo_off

__all__ = ["ALGOS", "Algorithm", "algo_class", "bpo", "mdpo", "mdpo_off", "pdppo", "ppo", "pqn", "props", "register"]
