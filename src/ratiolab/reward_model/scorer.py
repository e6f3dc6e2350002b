"""RL rewards from trained reward models (``reward.models``), with the verifier kept as the gold score.

:class:`RewardScorer` loads one reward model or an ensemble, checks that every RM tokenizes exactly as the
policy does (the RM reads the policy's sampled token ids), and relabels a batch of experience in place: the
verifier's rewards move to ``Experience.gold_rewards`` and the RM (ensemble) scores become
``Experience.rewards``. Members are combined by ``rewards.ensemble_reward`` (``mean``, ``wco``, ``uwo``); a row
with a non-finite member score gets reward 0 and mask 0 (no tokens in the loss) and is counted. With
``reward.calibration`` the scores pass through PPO-C (``rewards.calibrate_rewards``): each RM scores the response
with its ``Confidence: X`` text removed (re-encoded, EOS appended), the stated confidence adjusts the score, and
the running average is this object's checkpointed state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab.config import ConfigError
from ratiolab.config.train import RewardConfig
from ratiolab.reward_model.model import encode_texts, load_reward_model, reward_scores
from ratiolab.rewards.calibration import CalibrationConfig, calibrate_rewards, parse_confidence, strip_confidence
from ratiolab.rewards.ensemble import UWO_PPO, ensemble_reward
from ratiolab.rollout.experience import Experience

#: rows scored per reward-model forward
CHUNK = 256


def tokenizer_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """Why two tokenizers would give different ids for the same text (``None``: they agree)."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(a, name) != getattr(b, name):
            return f"{name} {getattr(b, name)} vs {getattr(a, name)}"
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        return f"vocabularies of {len(vb)} and {len(va)} tokens differ"
    probe = "12+7=19 Confidence: 9\nabc XYZ"
    if a(probe)["input_ids"] != b(probe)["input_ids"]:
        return "they encode the same text differently"
    return None


class RewardScorer:
    """The reward models of ``cfg.models``, checked against the policy's tokenizer (``policy_dir`` names it in
    errors), scoring batches of experience (module docstring)."""

    def __init__(self, cfg: RewardConfig, policy_tokenizer: PreTrainedTokenizerBase, policy_dir: str | Path) -> None:
        if not cfg.models:
            raise ValueError("RewardScorer needs reward.models (reward-model folders)")
        self.cfg = cfg
        self.members: list[PreTrainedModel] = []
        for folder in cfg.models:
            model, tok = load_reward_model(folder)
            why = tokenizer_difference(policy_tokenizer, tok)
            if why is not None:
                raise ConfigError(f"reward model {folder} has a tokenizer that differs from the policy's in "
                                  f"{policy_dir} ({why}); train the reward model from the policy: "
                                  f"ratiolab rm train --init {policy_dir}")
            self.members.append(model.eval())
        self.tokenizer = policy_tokenizer
        self.calibration = CalibrationConfig(**cfg.calibration_params) if cfg.calibration else None
        #: PPO-C's running reward average (explicit state, checkpointed)
        self.reward_avg = self.calibration.init_reward_avg if self.calibration is not None else 0.0

    @torch.no_grad()
    def member_scores(self, exp: Experience) -> torch.Tensor:
        """``[B, k]`` scores, one column per reward model: of the sampled token ids, or with calibration of
        the response text without its confidence statement."""
        if self.calibration is not None:
            texts = [strip_confidence(t) for t in exp.rollout.texts]
            ids, attention = encode_texts(self.tokenizer, [p.prompt for p in exp.problems], texts)  # chat prompts kept
        else:
            ids, attention, _ = exp.rollout.model_inputs()
        columns = []
        for model in self.members:
            device = next(model.parameters()).device
            parts = [reward_scores(model, ids[i:i + CHUNK].to(device), attention[i:i + CHUNK].to(device)).cpu()
                     for i in range(0, ids.shape[0], CHUNK)]
            columns.append(torch.cat(parts))
        return torch.stack(columns, -1)

    def relabel(self, exp: Experience) -> None:
        """Give ``exp`` reward-model rewards in place: gold (verifier) rewards kept, non-finite rows zero-weighted
        (reward 0, mask 0), the task's reward components dropped (they are the verifier's), metrics attached."""
        if exp.gold_rewards is not None:
            return  # already relabelled (a batch scored twice)
        scores = self.member_scores(exp)
        k = scores.shape[1]
        ddof = int(UWO_PPO["var_ddof"]) if k > 1 else 0  # one member: no spread to estimate
        combined = ensemble_reward(scores, self.cfg.ensemble, uwo_coef=self.cfg.uwo_coef, var_ddof=ddof,
                                   nonfinite="zero")
        rewards, ok = combined.reward, combined.weight > 0
        metrics: dict[str, float] = {"reward/nonfinite": float(combined.metrics["ensemble/nonfinite"])}
        if k > 1:
            metrics["reward/ensemble_std"] = float(combined.metrics["ensemble/std"])
        if self.calibration is not None and bool(ok.any()):
            confidence = torch.tensor([parse_confidence(t) for t in exp.rollout.texts])
            calibrated, self.reward_avg = calibrate_rewards(rewards[ok], confidence[ok], self.reward_avg,
                                                            self.calibration)
            rewards = rewards.clone()
            rewards[ok] = calibrated
            metrics["reward/calibration_avg"] = self.reward_avg
        exp.gold_rewards = exp.rewards
        exp.rewards = rewards.to(exp.rewards.dtype)
        exp.reward_components = None
        exp.rollout.mask[~ok] = 0
        exp.reward_metrics = metrics

    def state_dict(self) -> dict[str, Any]:
        return {"reward_avg": self.reward_avg}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reward_avg = float(state["reward_avg"])


def gold_metrics(exp: Experience) -> dict[str, float]:
    """``gold_reward`` (mean verifier reward), ``reward/gap`` (mean RM minus gold reward over the scored rows)
    and the scorer's metrics, for a relabelled batch (``{}`` otherwise)."""
    if exp.gold_rewards is None:
        return {}
    ok = exp.rollout.mask.sum(-1) > 0
    gap = (exp.rewards - exp.gold_rewards)[ok]
    return {"gold_reward": float(exp.gold_rewards.mean()),
            "reward/gap": float(gap.mean()) if gap.numel() else 0.0, **exp.reward_metrics}
