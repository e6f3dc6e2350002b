"""More critic-free outcome-reward estimators over ``[B]`` sequence rewards grouped by prompt.

Group conventions follow :func:`ratiolab.advantages.group.group_stats` (verl): std is unbiased unless
stated, and a group of one has mean 0 and std 1 unless an estimator says otherwise.
"""

from __future__ import annotations

import math

import torch

from ratiolab.advantages.core import ADVANTAGES
from ratiolab.advantages.group import group_index, group_stats, group_sum, grpo
from ratiolab.masked import masked_whiten


def top_two(values: torch.Tensor, inv: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, ...]:
    """Per group: the first row holding the maximum, the maximum, the runner-up (``-inf`` for a group
    of one) and whether the maximum is unique. ``values`` is ``[B]``; ties go to the lowest row."""
    v = values.double()
    rows = torch.arange(v.shape[0], device=v.device)
    neg_inf = torch.full((n_groups,), -math.inf, dtype=torch.float64, device=v.device)
    best = neg_inf.scatter_reduce(0, inv, v, "amax")
    at_best = v == best[inv]
    big = torch.full((n_groups,), v.shape[0], dtype=torch.long, device=v.device)
    top_row = big.scatter_reduce(0, inv, torch.where(at_best, rows, v.shape[0]), "amin")
    second = neg_inf.scatter_reduce(0, inv, torch.where(rows == top_row[inv], -math.inf, v), "amax")
    unique = group_sum(at_best.double(), inv, n_groups) == 1
    return top_row, best, second, unique


@ADVANTAGES.register(
    "gpg", arxiv="2504.02546", summary="alpha (r - group mean) / F_norm, alpha = B / #valid samples",
    inputs=("rewards", "group_ids")
)
def gpg(
    *,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    std_norm: bool = False,
    eps: float = 1e-6,
    valid: str = "varied_groups",
) -> torch.Tensor:
    """GPG (Group Policy Gradient): ``A_i = alpha (r_i - mean_g(r)) / F_norm``, ``alpha = B / B_valid``.

    ``F_norm`` is 1 (default, verl ``f_norm=1.0``) or, with ``std_norm``, ``std_g(r) + eps``. ``alpha``
    rescales the batch mean so that samples without gradient do not dilute it. ``valid``:

    - ``"varied_groups"`` (paper, [secondary source]): rows of groups whose rewards are not all equal,
      plus singletons with a non-zero advantage (``r_i``: the group of one has mean 0);
    - ``"nonzero_reward"``: rows with ``r_i != 0`` -- what verl's ``compute_gpg_outcome_advantage``
      counts (``count_nonzero`` of the raw scores); equal to the paper's count only in special cases.

    ``B_valid = 0`` gives ``alpha = B`` (verl clamps the count at 1); the advantages are then all 0.
    """
    if valid not in ("varied_groups", "nonzero_reward"):
        raise ValueError(f"gpg: valid must be 'varied_groups' or 'nonzero_reward', got {valid!r}")
    mean, std, count = group_stats(rewards, group_ids)
    adv = rewards - mean
    is_valid = (((count > 1) & (std > 0)) | (adv != 0)) if valid == "varied_groups" else rewards != 0
    alpha = rewards.shape[0] / max(int(is_valid.sum()), 1)
    if std_norm:
        adv = adv / (std + eps)
    return alpha * adv


@ADVANTAGES.register("opo", arxiv="2505.23585", summary="r - length-weighted group mean sum(l r) / sum(l)",
                     inputs=("rewards", "group_ids", "mask"))
def opo(*, rewards: torch.Tensor, group_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """OPO optimal baseline: ``A_i = r_i - sum_g(l_j r_j) / sum_g(l_j)`` with ``l_j`` the number of valid
    tokens of response ``j`` (``mask`` is ``[B, T]``).

    The variance-minimising baseline of exactly on-policy training under sequence-sum aggregation
    ([verified: code] verl ``compute_opo_outcome_advantage``); a group of one keeps ``r_i`` (baseline 0),
    and a group with no valid token gets baseline 0.
    """
    inv, n = group_index(rewards, group_ids)
    if mask.dim() != 2 or mask.shape[0] != rewards.shape[0]:
        raise ValueError(f"opo: mask must be [B, T] with B = {rewards.shape[0]}, got shape {tuple(mask.shape)}")
    length = mask.double().sum(-1)
    num, den = group_sum(length * rewards.double(), inv, n), group_sum(length, inv, n)
    size = group_sum(torch.ones_like(length), inv, n)
    base = torch.where((den > 0) & (size > 1), num / den.clamp(min=1e-300), torch.zeros_like(den))
    return rewards - base[inv].to(rewards.dtype)


@ADVANTAGES.register(
    "grpo_passk", arxiv="2503.19595", summary="only each group's best response: (r_max - r_2nd) / (std + eps)",
    inputs=("rewards", "group_ids")
)
def grpo_passk(
    *, rewards: torch.Tensor, group_ids: torch.Tensor, std_norm: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """verl ``grpo_passk`` (pass@k policy optimisation, arXiv 2503.19595): in each group only the best
    response gets a non-zero advantage, ``r_max - r_second_max`` (divided by ``std_g(r) + eps`` with
    ``std_norm``, verl's ``norm_adv_by_std_in_grpo=True``); everyone else gets 0.

    [verified: code] verl ``compute_grpo_passk_outcome_advantage``. Ties for the maximum go to the first
    row (then ``r_max - r_second_max = 0``); groups of one are rejected as in verl.
    """
    inv, n = group_index(rewards, group_ids)
    top_row, best, second, _ = top_two(rewards, inv, n)
    if torch.isinf(second).any():
        raise ValueError("grpo_passk: every group needs at least 2 responses (check group_ids)")
    adv = best - second
    if std_norm:
        _, std, _ = group_stats(rewards, group_ids)
        adv = adv / (std.double()[top_row] + eps)
    return torch.zeros_like(rewards).index_put_((top_row,), adv.to(rewards.dtype))


@ADVANTAGES.register(
    "passk", arxiv="2508.10751", summary="analytical pass@k advantage for 0/1 rewards (Pass@k Training)",
    inputs=("rewards", "group_ids")
)
def passk(*, rewards: torch.Tensor, group_ids: torch.Tensor, k: int, eps: float = 1e-6) -> torch.Tensor:
    """Analytical pass@k advantage (Pass@k Training, arXiv 2508.10751) for 0/1 rewards.

    A group of ``n`` responses with ``c`` correct has expected pass@k reward over its k-subsets
    ``rho = 1 - C(n-c, k) / C(n, k)`` and ``sigma = sqrt(rho (1 - rho))``; then
    ``A_pos = (1 - rho) / (sigma + eps)`` and ``A_neg = (1 - rho - C(n-c-1, k-1) / C(n-1, k-1)) / (sigma + eps)``
    ([verified: code] RUCAIBox/Passk_Training ``calc_adv``). ``k = 1`` is GRPO with the population std.
    Named apart from ``grpo_passk`` (verl's best-minus-runner-up form).
    """
    inv, n_groups = group_index(rewards, group_ids)
    if not bool(((rewards == 0) | (rewards == 1)).all()):
        raise ValueError("passk: rewards must be 0/1 (pass/fail); binarise the reward first")
    if k < 1:
        raise ValueError(f"passk: k must be >= 1, got {k}")
    size = group_sum(torch.ones_like(rewards), inv, n_groups).long().tolist()
    correct = group_sum(rewards, inv, n_groups).long().tolist()
    if k > min(size):
        raise ValueError(f"passk: k = {k} exceeds the smallest group size {min(size)}; lower k or sample more")
    pos, neg = [], []
    for n, c in zip(size, correct, strict=True):
        rho = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        sigma = math.sqrt(rho * (1.0 - rho)) + eps
        miss = math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1) if n - c >= 1 else 0.0
        pos.append((1.0 - rho) / sigma)
        neg.append((1.0 - rho - miss) / sigma)
    p = torch.tensor(pos, dtype=torch.float64, device=rewards.device)[inv]
    q = torch.tensor(neg, dtype=torch.float64, device=rewards.device)[inv]
    return torch.where(rewards == 1, p, q).to(rewards.dtype)


@ADVANTAGES.register(
    "grpo_batch_std", arxiv="2508.08221", summary="(r - group mean) / (batch std of r + eps) (Lite PPO)",
    inputs=("rewards", "group_ids")
)
def grpo_batch_std(
    *, rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6, std_ddof: int = 1
) -> torch.Tensor:
    """Group mean, batch std: ``A_i = (r_i - mean_g(r)) / (std_batch(r) + eps)`` ("Tricks or Traps",
    arXiv 2508.08221, the Lite PPO normalisation; [verified: code] ROLL ``reward_norm`` with
    ``norm_mean_type="group", norm_std_type="batch"``: unbiased std of the raw rewards, eps 1e-6).

    Differs from ``reinforce_pp_baseline``, which divides by the std of the *centred* scores over all
    valid tokens, and from verl's ``norm_adv_by_std_in_grpo``, which only toggles GRPO / Dr.GRPO.
    """
    mean, _, _ = group_stats(rewards, group_ids)
    if std_ddof not in (0, 1):
        raise ValueError(f"grpo_batch_std: std_ddof must be 0 or 1, got {std_ddof}")
    std = rewards.double().std(correction=std_ddof) if rewards.numel() > std_ddof else rewards.new_zeros(())
    return ((rewards - mean) / (std + eps)).to(rewards.dtype)


@ADVANTAGES.register("maxrl", arxiv="2602.02710", summary="(r - group mean) / (group mean + eps) for 0/1 rewards",
                     inputs=("rewards", "group_ids"))
def maxrl(*, rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MaxRL (Maximum Likelihood RL): ``A_i = (r_i - mean_g(r)) / (mean_g(r) + eps)``.

    With 0/1 rewards and ``c`` of ``n`` correct this is ``(n - c) / c`` for a success and ``-1`` for a
    failure: the sample estimate of the gradient of ``log pass@1`` instead of ``pass@1``; a group with no
    success gets 0 ([verified: code] MaxRL's verl ``compute_maxrl_outcome_advantage``, eps 1e-6).
    Rewards must be >= 0 (the group mean is a success rate). A group of one gets 0 here; the reference
    (group mean 0 for a singleton) would give ``r_i / eps``.
    """
    inv, n = group_index(rewards, group_ids)
    if bool((rewards < 0).any()):
        raise ValueError("maxrl: rewards must be >= 0 (0/1 pass/fail); shift or binarise the reward")
    mean = (group_sum(rewards, inv, n) / group_sum(torch.ones_like(rewards), inv, n))[inv]
    return ((rewards.double() - mean) / (mean + eps)).to(rewards.dtype)


@ADVANTAGES.register(
    "gdpo", arxiv="2601.05242", summary="sum_k w_k GRPO(r_k), then whitened over the batch's valid tokens",
    inputs=("rewards", "group_ids", "mask"), reward_components=True,
)
def gdpo(
    *,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mask: torch.Tensor,
    reward_weights: tuple[float, ...] | None = None,
    eps: float = 1e-6,
    std_ddof: int = 1,
    whiten_ddof: int = 1,
) -> torch.Tensor:
    """GDPO (group reward-decoupled normalisation) for ``K`` reward components.

    ``rewards`` is ``[B, K]`` (component ``k`` of response ``i`` in column ``k``; a ``[B]`` tensor is one
    component). ``A_k = (r_k - mean_g(r_k)) / (std_g(r_k) + eps)`` per component and group (``grpo``),
    ``A = sum_k w_k A_k`` (``reward_weights``, default all 1), then ``A`` broadcast over the ``[B, T]``
    ``mask`` and whitened over all valid tokens (unbiased variance, ``1e-8`` inside the sqrt).
    [verified: code] verl ``compute_gdpo_outcome_advantage``; returns ``[B, T]``.
    """
    r = rewards[:, None] if rewards.dim() == 1 else rewards
    if r.dim() != 2:
        raise ValueError(f"gdpo: rewards must be [B] or [B, K] reward components, got shape {tuple(rewards.shape)}")
    if mask.dim() != 2 or mask.shape[0] != r.shape[0]:
        raise ValueError(f"gdpo: mask must be [B, T] with B = {r.shape[0]}, got shape {tuple(mask.shape)}")
    w = [1.0] * r.shape[1] if reward_weights is None else list(reward_weights)
    if len(w) != r.shape[1]:
        raise ValueError(f"gdpo: reward_weights has {len(w)} entries for K = {r.shape[1]} reward components")
    parts = [wk * grpo(rewards=r[:, j], group_ids=group_ids, eps=eps, std_ddof=std_ddof) for j, wk in enumerate(w)]
    total = torch.stack(parts).sum(0)
    m = mask.to(total.dtype)
    return masked_whiten(total[:, None] * m, m, ddof=whiten_ddof)
