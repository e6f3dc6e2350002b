"""Guess-the-number: a multi-turn task for turn-level methods.

The policy writes a guess ending with ``?``; the environment answers ``" higher\\n"`` (the secret
is larger), ``" lower\\n"`` or ``" correct"`` (the episode ends). The reward, given at the end,
is 1.0 iff one of the first ``max_turns`` guesses equals the secret. A transcript reads::

    guess 1-15:8? higher
    12? lower
    10? correct
"""

from __future__ import annotations

import random
import re
from typing import Literal

from ratiolab.tasks.base import MultiTurnTask, Problem, ProceduralTask

TURN_END = "?"


class GuessNumber(ProceduralTask, MultiTurnTask):
    """Secret in ``[1, max_value]``; binary search finds it within ``ceil(log2(max_value + 1))`` turns.

    ``held_out``: what the test split holds out. ``secrets`` (default): a share of the secrets, so a test
    episode ends in guesses no training episode (or demonstration) contains and held-out accuracy measures
    extrapolation to unseen numbers. ``episodes``: every secret occurs in both splits and the split hashes an
    episode id, so held-out accuracy measures the strategy on fresh episodes of the training distribution
    (the prompt is the same for every problem, as in a gym environment's evaluation).

    ``teacher_noise``: the share of demonstrations that play a linear search (1, 2, 3, ...) instead of the
    binary search, picked per problem from a hash of its split key. A policy pre-trained on them mixes the two
    searches from its first guess on; the linear one fails whenever the secret exceeds ``max_turns``, so RL can
    gain by moving the first guess's probability to the binary search (a fast, learnable regime).

    See ``MultiTurnTask`` for the rollout interface.
    """

    name = "guess"
    distinct_test = False
    turn_end = TURN_END

    def __init__(
        self, max_value: int = 15, max_turns: int = 5, test_fraction: float = 0.2, split_seed: int = 0,
        held_out: Literal["secrets", "episodes"] = "secrets", teacher_noise: float = 0.0,
    ) -> None:
        super().__init__(test_fraction=test_fraction, split_seed=split_seed)
        if max_value < 2:
            raise ValueError(f"max_value={max_value} must be >= 2")
        if max_turns < 1:
            raise ValueError(f"max_turns={max_turns} must be >= 1")
        if held_out not in ("secrets", "episodes"):
            raise ValueError(f"held_out={held_out!r} must be 'secrets' (unseen numbers) or 'episodes' (fresh episodes)")
        if not 0.0 <= teacher_noise <= 1.0:
            raise ValueError(f"teacher_noise={teacher_noise} must lie in [0, 1] (the share of linear searches)")
        self.max_value = max_value
        self.max_turns = max_turns
        self.held_out = held_out
        self.teacher_noise = teacher_noise

    def split_key(self, problem: Problem) -> str:
        """All prompts are identical, so the split hashes the secret (or the secret and the episode id)."""
        return problem.answer if self.held_out == "secrets" else f"{problem.answer}#{problem.meta['episode']}"

    def _problem(self, secret: int, episode: int | None = None) -> Problem:
        meta = {"secret": secret} if episode is None else {"secret": secret, "episode": episode}
        return Problem(prompt=f"guess 1-{self.max_value}:", answer=str(secret), meta=meta)

    def generate(self, rng: random.Random) -> Problem:
        secret = rng.randint(1, self.max_value)
        return self._problem(secret, rng.getrandbits(32) if self.held_out == "episodes" else None)

    def env_reply(self, problem: Problem, policy_turns: list[str]) -> tuple[str, bool]:
        """Reply to the last policy turn; ``done`` once the guess is right or turns run out."""
        guess = _parse_guess(policy_turns[-1])
        secret = int(problem.answer)
        if guess == secret:
            return " correct", True
        done = len(policy_turns) >= self.max_turns
        if guess is None:
            return " invalid\n", done
        return (" higher\n" if secret > guess else " lower\n"), done

    def reward(self, problem: Problem, completion: str) -> float:
        turns = completion.split(TURN_END)[: self.max_turns]
        guesses = [_parse_guess(_strip_reply(t) + TURN_END) for t in turns]
        return float(int(problem.answer) in guesses)

    def demonstration(self, problem: Problem) -> str:
        """Binary search transcript (a linear search for a ``teacher_noise`` share of problems), environment
        replies included."""
        lo, hi, secret = 1, self.max_value, int(problem.answer)
        linear = random.Random(self.split_key(problem)).random() < self.teacher_noise
        turns: list[str] = []
        text = ""
        while True:
            guess = lo if linear else (lo + hi) // 2
            turns.append(f"{guess}{TURN_END}")
            reply, done = self.env_reply(problem, turns)
            text += turns[-1] + reply
            if done:
                return text
            lo, hi = (guess + 1, hi) if secret > guess else (lo, guess - 1)


def _strip_reply(turn: str) -> str:
    """Drop the environment reply that precedes a policy guess inside a transcript chunk."""
    return turn.rsplit("\n", 1)[-1]


def _parse_guess(turn: str) -> int | None:
    match = re.fullmatch(r"\s*(\d{1,6})\?", turn)
    return int(match.group(1)) if match else None
