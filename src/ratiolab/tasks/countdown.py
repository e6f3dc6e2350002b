"""Countdown: combine the given numbers with ``+ - * /`` and parentheses to reach a target.

Prompt ``"3 5 7>22:"``, a correct completion ``"3*5+7"``. The verifier parses the completion with
a recursive-descent parser (no ``eval``), checks that every literal is one of the given numbers
(each used at most once) and that the exact rational value equals the target.
"""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

from ratiolab.tasks.base import Problem, ProceduralTask
from ratiolab.tasks.expression import parse

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class Countdown(ProceduralTask):
    """``n_numbers`` numbers in ``[1, max_number]``; the target is reachable by construction."""

    name = "countdown"

    def __init__(
        self, n_numbers: int = 3, max_number: int = 10, test_fraction: float = 0.2, split_seed: int = 0
    ) -> None:
        super().__init__(test_fraction=test_fraction, split_seed=split_seed)
        if n_numbers < 2:
            raise ValueError(f"n_numbers={n_numbers} must be >= 2")
        if max_number < 2:
            raise ValueError(f"max_number={max_number} must be >= 2")
        self.n_numbers = n_numbers
        self.max_number = max_number

    def generate(self, rng: random.Random) -> Problem:
        while True:
            numbers = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            order = rng.sample(numbers, k=len(numbers))
            expr, value, prec = str(order[0]), Fraction(order[0]), 3
            for x in order[1:]:
                op = rng.choice("+-*/")
                if op == "/" and value % x != 0:
                    op = "+"
                left = f"({expr})" if prec < _PRECEDENCE[op] else expr
                expr, prec = f"{left}{op}{x}", _PRECEDENCE[op]
                value = {"+": value + x, "-": value - x, "*": value * x, "/": value / x}[op]
            if value > 0 and value.denominator == 1:
                prompt = " ".join(map(str, numbers)) + f">{value}:"
                meta = {"numbers": tuple(numbers), "target": int(value)}
                return Problem(prompt=prompt, answer=expr, meta=meta)

    def reward(self, problem: Problem, completion: str) -> float:
        try:
            parsed = parse(completion.strip())
        except ValueError:
            return 0.0
        allowed = Counter(_numbers(problem))
        if Counter(parsed.numbers) - allowed:
            return 0.0
        return float(parsed.value == _target(problem))

    def demonstration(self, problem: Problem) -> str:
        return problem.answer


def _numbers(problem: Problem) -> tuple[int, ...]:
    numbers = problem.meta["numbers"]
    assert isinstance(numbers, tuple)
    return numbers


def _target(problem: Problem) -> int:
    target = problem.meta["target"]
    assert isinstance(target, int)
    return target
