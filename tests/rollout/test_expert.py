"""Expert tokens from a task's demonstrations: teacher-forced rows (CHORD) and off-policy prefixes (PrefixRL)."""

from __future__ import annotations

import pytest
import torch

from ratiolab import tasks
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.engines.hf_engine import encode_prompt
from ratiolab.policies import build_policy
from ratiolab.rollout import collect
from ratiolab.rollout.expert import demonstration_ids, expert_rollout, prefix_length
from ratiolab.tasks import Problem


class StartsWith(tasks.Arithmetic):
    """Reward 1 when the text the verifier sees starts with the answer's first three characters."""

    def reward(self, problem: Problem, completion: str) -> float:
        return float(completion.startswith(problem.answer[:3]))


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    model, tok = build_policy("tiny", seed=0)
    return HFEngine(model, tok, dtype=torch.float32)


def test_prefix_tokens_are_context_not_loss_worked_example(engine: HFEngine) -> None:
    # spec example: a prompt of 4 tokens, h = 3 and a completion of 5 tokens give the loss mask [0]*7 + [1]*5
    prob, task = Problem("9+9", "12345"), StartsWith(level=1)
    assert len(encode_prompt(engine.tokenizer, prob.prompt)) == 4
    prefix = demonstration_ids(engine.tokenizer, task, [prob])[0][:3]
    exp = collect(engine, task, [prob], 2, SamplingParams(max_new_tokens=5), seed=0, prefixes=[prefix])
    input_ids, _, start = exp.rollout.model_inputs()
    assert start == 7 and input_ids[0, 4:7].tolist() == prefix  # the prefix sits in the prompt, after the prompt
    loss_mask = torch.cat([torch.zeros(2, start), exp.rollout.mask], dim=1)
    assert loss_mask.tolist() == [[0.0] * 7 + [1.0] * 5] * 2  # an untrained policy writes all 5 tokens
    assert exp.prefix_tokens is not None and exp.prefix_tokens.tolist() == [3, 3]
    # the verifier scores prefix + completion: "123..." although the policy never wrote "123"
    assert exp.rewards.tolist() == [1.0, 1.0]
    assert all(not t.startswith("123") for t in exp.rollout.texts)
    plain = collect(engine, task, [prob], 2, SamplingParams(max_new_tokens=5), seed=0)
    assert plain.rewards.tolist() == [0.0, 0.0] and plain.prefix_tokens is None


def test_prefix_length_rule() -> None:
    assert [prefix_length(n, 0.5) for n in (0, 1, 2, 3, 6, 7)] == [0, 0, 1, 1, 3, 3]
    assert prefix_length(6, 0.99) == 5 and prefix_length(6, 0.01) == 1  # at least one token left, at least one given
    with pytest.raises(ValueError, match=r"prefix.fraction = 1.0 must lie in \(0, 1\)"):
        prefix_length(6, 1.0)


def test_expert_rollout_is_the_demonstration_and_eos(engine: HFEngine) -> None:
    task = tasks.get("arithmetic", level=1)
    problems = [Problem("1+3=", "4"), Problem("3+7=", "10")]
    ro = expert_rollout(engine, task, problems)
    eos, pad = engine.tokenizer.eos_token_id, engine.tokenizer.pad_token_id
    demo = demonstration_ids(engine.tokenizer, task, problems)
    assert ro.tokens.tolist() == [demo[0] + [eos, pad], demo[1] + [eos]]
    assert ro.mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]] and ro.lengths.tolist() == [2, 3]
    assert ro.texts == ["4", "10"] and bool(ro.finished.all()) and float(ro.behav_logp.abs().sum()) == 0.0
    assert ro.version.tolist() == [[0, 0, -1], [0, 0, 0]]
