"""One step's experience: sampled responses, their verified rewards and their prompt groups.

``collect`` samples ``n`` responses per problem with the engine and scores each with the
task's exact verifier (and its reward components, when the task has them). A verifier that raises
scores the sample 0 and is counted in ``reward_errors`` instead of stopping the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ratiolab.engines import HFEngine, Rollout, SamplingParams, StepHook
from ratiolab.engines.hf_engine import encode_prompt
from ratiolab.engines.multiturn import generate_turns
from ratiolab.rollout.expert import expert_rollout
from ratiolab.tasks import MultiTurnTask, Problem, Task


@dataclass
class Experience:
    """Rollout rows ``i = g * n + j`` hold sample ``j`` of problem ``g`` (``group_ids[i] = g``).

    ``uid`` numbers the batches an actor produced; ``prox_logp``/``prox_done`` hold the old
    log-probs an exact old-logit strategy recorded and which tokens have one. ``reward_components``:
    ``[B, K]`` separate rewards of a task that has them (``Task.reward_components``), next to ``rewards``.
    ``gold_rewards``: the verifier's rewards once reward models have replaced ``rewards``
    (``reward_model.RewardScorer``), with the scorer's ``reward_metrics``.
    ``expert``: one teacher-forced demonstration row per problem (:func:`~ratiolab.rollout.expert.expert_rollout`),
    when asked for; ``prefix_tokens``: ``[B]`` demonstration tokens each row's prompt ends with (PrefixRL: context,
    not sampled and not in ``mask``), when prefixes were asked for.
    """

    rollout: Rollout
    problems: list[Problem]
    rewards: torch.Tensor
    group_ids: torch.Tensor
    reward_errors: int
    greedy_rewards: torch.Tensor | None = None
    uid: int = 0
    reward_components: torch.Tensor | None = None
    gold_rewards: torch.Tensor | None = None
    reward_metrics: dict[str, float] = field(default_factory=dict)
    expert: Rollout | None = None
    prefix_tokens: torch.Tensor | None = None
    prox_logp: torch.Tensor = field(init=False)
    prox_done: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.prox_logp = torch.zeros_like(self.rollout.behav_logp, dtype=torch.float32)
        self.prox_done = torch.zeros_like(self.rollout.mask, dtype=torch.bool)

    @property
    def size(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def min_version(self) -> int:
        """Oldest policy version among the valid tokens (the batch's staleness is set by it)."""
        valid = self.rollout.version[self.rollout.mask > 0]
        return int(valid.min()) if valid.numel() else int(self.rollout.version.max())


def score(task: Task, problems: list[Problem], texts: list[str]) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """Verifier rewards of ``texts`` (one per problem), the number of raising verifiers and the ``[B, K]``
    reward components (``None`` when the task has none); a raising verifier scores 0 (every component
    too) and is counted."""
    rewards, parts, errors = [], [], 0
    for problem, text in zip(problems, texts, strict=True):
        try:
            reward, part = float(task.reward(problem, text)), task.reward_components(problem, text)
        except Exception:  # a buggy user verifier must not kill the run; it is counted instead
            reward, part = 0.0, None
            errors += 1
        rewards.append(reward)
        parts.append(part)
    k = next((len(p) for p in parts if p is not None), 0)
    components = torch.tensor([p if p is not None else (0.0,) * k for p in parts], dtype=torch.float32) if k else None
    return torch.tensor(rewards, dtype=torch.float32), errors, components


def collect(
    engine: HFEngine,
    task: Task,
    problems: list[Problem],
    n: int,
    sampling: SamplingParams,
    seed: int,
    with_greedy: bool = False,
    on_step: StepHook | None = None,
    with_expert: bool = False,
    prefixes: list[list[int]] | None = None,
) -> Experience:
    """Sample ``n`` responses per problem (seeded), verify them; ``with_greedy`` adds ReMax's greedy rewards,
    ``with_expert`` the problems' teacher-forced demonstrations (``Experience.expert``).

    ``prefixes`` (PrefixRL): per problem, token ids appended to its encoded prompt (``[]``: none); the policy
    continues from them, and the verifier scores the prefix's text plus the completion.

    A multi-turn task is rolled out turn by turn (``engines.generate_turns``): the response holds
    policy and environment tokens, the latter masked out, and ``turn_ids`` marks the turns. Its
    weights sync only between batches (``on_step`` applies to single-turn generation).
    """
    repeated = [p for p in problems for _ in range(n)]
    ids: list[list[int]] | None = None  # prompt + prefix token ids per problem
    heads = [""] * len(problems)
    if prefixes is not None:
        if isinstance(task, MultiTurnTask):
            raise ValueError(f"prefix.prob > 0: task {task.name} is multi-turn; off-policy prefixes need a "
                             "single-turn task")
        ids = [encode_prompt(engine.tokenizer, p.prompt) + pre for p, pre in zip(problems, prefixes, strict=True)]
        heads = [engine.decode(pre) if pre else "" for pre in prefixes]
    if isinstance(task, MultiTurnTask):  # policy turns and environment replies; turn_ids in the rollout
        rollout = generate_turns(engine, task, repeated, sampling, seed=seed)
    else:
        prompts = [p.prompt for p in repeated] if ids is None else [q for q in ids for _ in range(n)]
        rollout = engine.generate(prompts, sampling, seed=seed, on_step=on_step)
    behav = getattr(rollout, "behav_logp", None)
    if not isinstance(behav, torch.Tensor) or behav.shape != rollout.tokens.shape:
        raise ValueError(
            f"engine {type(engine).__name__} returned no behav_logp of shape {tuple(rollout.tokens.shape)}; an engine "
            "must report the log-prob of every sampled token under the distribution it sampled from"
        )
    rewards, errors, components = score(task, repeated, _after(heads, n, rollout.texts))
    greedy = None
    if with_greedy:
        greedy_sampling = SamplingParams(greedy=True, max_new_tokens=sampling.max_new_tokens)
        greedy_prompts = [p.prompt for p in problems] if ids is None else ids
        greedy_rollout = engine.generate(greedy_prompts, greedy_sampling, seed=seed)
        greedy_per_problem, _, _ = score(task, problems, _after(heads, 1, greedy_rollout.texts))
        greedy = greedy_per_problem.repeat_interleave(n)
    group_ids = torch.arange(len(problems)).repeat_interleave(n)
    prefix_tokens = None if prefixes is None else torch.tensor([len(pre) for pre in prefixes]).repeat_interleave(n)
    expert = expert_rollout(engine, task, problems) if with_expert else None
    return Experience(rollout, repeated, rewards, group_ids, errors, greedy, reward_components=components,
                      expert=expert, prefix_tokens=prefix_tokens)


def _after(heads: list[str], n: int, texts: list[str]) -> list[str]:
    """Each completion after its problem's prefix text (``heads[i // n]``)."""
    return [heads[i // n] + t for i, t in enumerate(texts)]
