"""The classic-control algorithms, one file each; importing this package registers them in
:data:`ratiolab.gym.algorithm.ALGOS` (the on-policy ones subclass :class:`ratiolab.gym.onpolicy.OnPolicy`)."""

from ratiolab.gym import mdpo_off, pqn
from ratiolab.gym.algorithm import ALGOS, Algorithm, algo_class, register
from ratiolab.gym.algos import bpo, mdpo, pdppo, ppo, props

__all__ = ["ALGOS", "Algorithm", "algo_class", "bpo", "mdpo", "mdpo_off", "pdppo", "ppo", "pqn", "props", "register"]
