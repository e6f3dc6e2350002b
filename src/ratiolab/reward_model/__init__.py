"""Learned reward models: preference pairs from the text tasks, a Bradley-Terry (or PPO-M calibrated) reward
model over a causal-LM trunk (``ratiolab rm train``), and the scorer that gives RL its rewards from one RM or
an ensemble (``reward.models``) while the verifier stays the gold score."""

from ratiolab.reward_model.model import build_reward_model, load_reward_model, reward_scores
from ratiolab.reward_model.pairs import PreferencePair, generate_pairs, read_pairs, write_pairs
from ratiolab.reward_model.train import RMTrainConfig, pair_accuracy, train_reward_model

__all__ = [
    "PreferencePair", "RMTrainConfig", "build_reward_model", "generate_pairs", "load_reward_model", "pair_accuracy",
    "read_pairs", "reward_scores", "train_reward_model", "write_pairs",
]
