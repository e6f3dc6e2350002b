"""Multi-turn rollouts: policy turns interleaved with environment replies in one token sequence."""

from __future__ import annotations

from dataclasses import replace

import torch

from ratiolab.engines.hf_engine import HFEngine, encode_prompt
from ratiolab.engines.sampling import Rollout, SamplingParams
from ratiolab.tasks import MultiTurnTask, Problem


def generate_turns(
    engine: HFEngine, task: MultiTurnTask, problems: list[Problem], sampling: SamplingParams, seed: int = 0
) -> Rollout:
    """Roll out ``task`` for each problem: a policy turn (stopped at ``task.turn_end``), then
    ``task.env_reply``, until the episode is done or the policy emits EOS.

    The response holds policy and environment tokens in order. Environment tokens have
    ``mask`` 0, ``behav_logp`` 0, ``version`` -1 and ``turn_ids`` -1; policy tokens of turn ``k``
    have ``turn_ids`` ``k``. Each turn re-encodes the context (no KV reuse across turns).
    """
    tokenizer = engine.tokenizer
    end_ids = tokenizer(task.turn_end, add_special_tokens=False)["input_ids"]
    if len(end_ids) != 1:
        raise ValueError(f"turn_end={task.turn_end!r} must be a single token of the tokenizer")
    turn_sampling = replace(sampling, stop_token_ids=(*sampling.stop_token_ids, end_ids[0]))
    prompts = [encode_prompt(tokenizer, p.prompt) for p in problems]
    columns: list[list[tuple[int, float, int, int, bool]]] = [[] for _ in problems]
    turns: list[list[str]] = [[] for _ in problems]
    finished = [False] * len(problems)
    active = list(range(len(problems)))
    for turn in range(task.max_turns):
        if not active:
            break
        contexts = [prompts[i] + [c[0] for c in columns[i]] for i in active]
        out = engine.generate(contexts, turn_sampling, seed=seed * 1_000_003 + turn)
        still_active = []
        for row, i in enumerate(active):
            n = int(out.lengths[row])
            for t in range(n):
                token, logp, ver = int(out.tokens[row, t]), float(out.behav_logp[row, t]), int(out.version[row, t])
                columns[i].append((token, logp, ver, turn, True))
            turns[i].append(out.texts[row])
            if not bool(out.finished[row]) or int(out.tokens[row, n - 1]) != end_ids[0]:
                finished[i] = bool(out.finished[row])  # EOS ends the episode; the length limit cuts it
                continue
            reply, done = task.env_reply(problems[i], turns[i])
            finished[i] = done
            reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
            columns[i].extend((tok, 0.0, -1, -1, False) for tok in reply_ids)
            if not done:
                still_active.append(i)
        active = still_active
    return _pack(engine, problems, prompts, columns, finished)


def _pack(
    engine: HFEngine,
    problems: list[Problem],
    prompts: list[list[int]],
    columns: list[list[tuple[int, float, int, int, bool]]],
    finished: list[bool],
) -> Rollout:
    prompt_ids, prompt_mask = engine.encode_prompts(prompts)
    batch, width = len(problems), max(1, max(len(c) for c in columns))
    tokens = torch.full((batch, width), int(engine.tokenizer.pad_token_id), dtype=torch.long)
    behav_logp = torch.zeros(batch, width)
    version = torch.full((batch, width), -1, dtype=torch.long)
    turn_ids = torch.full((batch, width), -1, dtype=torch.long)
    mask = torch.zeros(batch, width)
    for i, column in enumerate(columns):
        for t, (tok, logp, ver, turn, is_policy) in enumerate(column):
            tokens[i, t], behav_logp[i, t], version[i, t] = tok, logp, ver
            turn_ids[i, t], mask[i, t] = (turn, 1.0) if is_policy else (-1, 0.0)
    lengths = torch.tensor([len(c) for c in columns], dtype=torch.long)
    texts = [engine.decode([c[0] for c in column]) for column in columns]
    return Rollout(
        prompts=[p.prompt for p in problems], prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens,
        mask=mask, behav_logp=behav_logp, version=version, finished=torch.tensor(finished), lengths=lengths,
        texts=texts, turn_ids=turn_ids,
    )
