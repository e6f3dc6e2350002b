"""Reward-model side of RLHF, as pure functions: reward-model losses (Bradley-Terry, the calibrated CRM),
per-batch reward calibration (PPO-C), ensembles (mean, WCO, UWO), the self-rewarding log-ratio reward and
PF-PPO's response filters with their R^2 selection rule.

Every function takes tensors and returns tensors (and detached 0-d metric tensors where it has
diagnostics); state such as a running reward average is passed in and returned, never kept.
"""
