"""The algorithm table is the trainer's only dispatch: a class registered here is trained without edits, and no
comparison in ``src/ratiolab/gym`` involves an algorithm or objective name."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ratiolab import objectives
from ratiolab.gym import GymTrainConfig, PPOConfig, train
from ratiolab.gym.algorithm import ALGOS, register
from ratiolab.gym.algos.ppo import PPO
from ratiolab.gym.rollout import Step

GYM = Path(__file__).resolve().parents[2] / "src" / "ratiolab" / "gym"


class Probe(PPO):
    """A throwaway algorithm: PPO whose hooks count their calls and whose advantage is doubled."""

    name = "test_probe"
    objective = "cispo"
    steps = 0
    prepared = 0

    def on_step(self, t: int, obs: list[torch.Tensor], act: list[torch.Tensor], step: Step) -> None:
        type(self).steps += 1

    def prepare_batch(self, flat: dict[str, torch.Tensor]) -> None:
        super().prepare_batch(flat)
        flat["adv"] = 2.0 * flat["adv"]
        type(self).prepared += 1


@pytest.fixture
def probe() -> Iterator[type[Probe]]:
    register(Probe)
    Probe.steps = Probe.prepared = 0
    try:
        yield Probe
    finally:
        del ALGOS[Probe.name]


def test_a_registered_class_is_trained_without_edits(probe: type[Probe]) -> None:
    cfg = GymTrainConfig(algo=probe.name, total_steps=64, eval_episodes=1, ppo=PPOConfig(num_envs=2, num_steps=16))
    assert cfg.objective == "cispo" and not cfg.objective_configurable  # the class's declarations
    res = train(cfg, None)  # nothing but the table knows the name
    assert (probe.steps, probe.prepared) == (32, 2)  # 2 iterations x 16 vector steps; one batch per iteration
    assert len(res.rows) == 2 and "clip_frac" in res.rows[-1]


def test_the_table_refuses_unknown_and_duplicate_names(probe: type[Probe]) -> None:
    with pytest.raises(ValueError, match=r"algo = 'nope' is not one of \['ppo', .*'test_probe'\]"):
        GymTrainConfig(algo="nope")
    with pytest.raises(ValueError, match="'test_probe' is already registered"):
        register(Probe)
    assert list(ALGOS) == ["ppo", "mdpo", "bpo", "props", "pdppo", "pqn", "mdpo_off", "test_probe"]


def _named_checks(source: str, names: set[str]) -> list[str]:
    """``line: name`` for each comparison (``==``, ``!=``, ``in``, ``not in``, ...) with a string constant in
    ``names``, or a ``match`` case on one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare | ast.match_case):
            part_of = node.pattern if isinstance(node, ast.match_case) else node
            for part in ast.walk(part_of):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and part.value in names:
                    found.append(f"{getattr(part, 'lineno', '?')}: {part.value}")
    return sorted(found, key=lambda f: (int(f.split(":")[0]), f))


def test_gym_compares_no_algorithm_or_objective_name() -> None:
    names = set(ALGOS) | set(objectives.names())
    files = sorted(GYM.rglob("*.py"))
    assert {"onpolicy.py", "train.py", "config.py", "ppo.py"} <= {f.name for f in files}
    hits = {str(f.relative_to(GYM)): h for f in files if (h := _named_checks(f.read_text(), names))}
    assert not hits, f"name checks in the gym trainers: {hits}"


def test_name_check_finder_sees_comparisons() -> None:
    src = ('if cfg.algo == "pqn" or x in ("ppo", "y"):\n    pass\nprint("mdpo")\n'
           'match algo:\n    case "bpo":\n        pass\n')
    assert _named_checks(src, {"pqn", "ppo", "mdpo", "bpo"}) == ["1: ppo", "1: pqn", "5: bpo"]
