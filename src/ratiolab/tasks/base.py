"""Task interface: procedural problems, exact verifiers and seeded, disjoint train/test splits."""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


@dataclass(frozen=True)
class Problem:
    """One task instance: the text shown to the policy, the reference answer and task metadata."""

    prompt: str
    answer: str
    meta: Mapping[str, object] = field(default_factory=dict)


def check_split(split: str) -> Split:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise a ValueError naming the field."""
    if split == "train":
        return "train"
    if split == "test":
        return "test"
    raise ValueError(f"split={split!r} is not valid; use one of {SPLITS}")


def split_of(key: str, split_seed: int, test_fraction: float) -> Split:
    """Deterministic split assignment: ``"test"`` iff blake2b(split_seed, key) / 2^64 < test_fraction.

    A problem's split depends only on its key (the prompt), so the splits are disjoint for every
    sampling seed and reproducible across processes (unlike Python's salted ``hash``).
    """
    digest = hashlib.blake2b(f"{split_seed}:{key}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") / 2.0**64 < test_fraction else "train"


class Task(ABC):
    """A verifiable text task.

    Subclasses give ``sample`` (problems of a split), ``reward`` (an exact verifier) and
    ``demonstration`` (a correct completion, used for supervised pre-training).
    """

    name: str = ""
    multi_turn: bool = False
    #: Whether a response must hold a whole demonstration (free-text solutions, not a short answer): a run
    #: checks before it starts that ``sampling.max_new_tokens`` fits them (:func:`completion_tokens`).
    long_answers: bool = False

    @abstractmethod
    def sample(self, n: int, split: Split = "train", seed: int = 0) -> list[Problem]:
        """Return ``n`` problems of ``split``, reproducible from ``seed``."""

    @abstractmethod
    def reward(self, problem: Problem, completion: str) -> float:
        """Exact verifier: 1.0 for a correct completion, 0.0 otherwise."""

    @abstractmethod
    def demonstration(self, problem: Problem) -> str:
        """A completion that ``reward`` scores 1.0."""

    def reward_components(self, problem: Problem, completion: str) -> tuple[float, ...] | None:
        """Separate reward components (e.g. correctness, format), the same ``K`` for every completion, for
        multi-reward advantages (GDPO); ``None`` (the default): the task has only :meth:`reward`."""
        return None


def completion_tokens(task: Task, problems: Sequence[Problem], tokenizer: Callable[..., Any]) -> int:
    """The ``max_new_tokens`` that holds every demonstration of ``problems``: the longest, in ``tokenizer``'s
    tokens (a Hugging Face tokenizer; no special tokens), plus one for the end-of-sequence token."""
    if not problems:
        raise ValueError("problems is empty: no demonstration to measure")
    return max(len(tokenizer(task.demonstration(p), add_special_tokens=False)["input_ids"]) for p in problems) + 1


class ProceduralTask(Task):
    """A task whose problems come from a seeded generator, split by a hash of the prompt.

    Train sampling draws with replacement (an endless stream); test sampling returns distinct
    problems (when ``distinct_test``), so a held-out set never repeats a problem.
    """

    distinct_test: bool = True

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0) -> None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction={test_fraction} must lie in (0, 1)")
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    @abstractmethod
    def generate(self, rng: random.Random) -> Problem:
        """Draw one problem, ignoring splits."""

    def split_key(self, problem: Problem) -> str:
        """The string whose hash assigns ``problem`` to a split (the prompt by default)."""
        return problem.prompt

    def sample(self, n: int, split: Split = "train", seed: int = 0) -> list[Problem]:
        split = check_split(split)
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        rng = random.Random(f"{self.name}:{split}:{seed}")
        out: list[Problem] = []
        seen: set[str] = set()
        for _ in range(200 * n + 1000):
            if len(out) == n:
                return out
            problem = self.generate(rng)
            key = self.split_key(problem)
            if split_of(key, self.split_seed, self.test_fraction) != split:
                continue
            if split == "test" and self.distinct_test:
                if key in seen:
                    continue
                seen.add(key)
            out.append(problem)
        if len(out) == n:
            return out
        raise ValueError(
            f"could only draw {len(out)} distinct {split!r} problems of {n} requested for task "
            f"{self.name!r}; lower n, raise test_fraction or the difficulty"
        )


class MultiTurnTask(Task):
    """A task whose rollout alternates policy turns and environment replies.

    A policy turn ends at ``turn_end`` (or EOS, which ends the episode); ``env_reply`` returns the
    reply text to append and whether the episode is over. ``reward`` scores the whole transcript
    (policy turns and replies concatenated); ``demonstration`` returns such a transcript.
    """

    multi_turn = True
    turn_end: str = ""
    max_turns: int = 1

    @abstractmethod
    def env_reply(self, problem: Problem, policy_turns: list[str]) -> tuple[str, bool]:
        """Reply to the last of ``policy_turns``; return ``(text, done)``."""
