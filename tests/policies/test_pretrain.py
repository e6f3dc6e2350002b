from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ratiolab import tasks
from ratiolab.config import ConfigError
from ratiolab.engines import HFEngine, SamplingParams
from ratiolab.policies import build_policy, load_policy
from ratiolab.policies import pretrain as pretrain_mod
from ratiolab.policies.evaluate import accuracy
from ratiolab.policies.pretrain import PretrainConfig, completion_loss, demonstration_batch, pretrain
from ratiolab.tasks import Problem
from ratiolab.tasks.base import split_of


def test_demonstration_batch_labels_only_the_completion() -> None:
    _, tok = build_policy("tiny")
    task = tasks.get("arithmetic", level=1)
    problems = [Problem(prompt="2+3=", answer="5"), Problem(prompt="9*9=", answer="81")]
    ids, attention, labels = demonstration_batch(tok, task, problems)
    assert tok.decode(ids[1].tolist()) == "<bos>9*9=81<eos>"
    assert ids[0].tolist()[-1] == tok.pad_token_id and attention[0].tolist() == [1] * 7 + [0]
    five, eight, one = (tok.convert_tokens_to_ids(c) for c in "581")
    assert labels.tolist() == [[-100] * 5 + [five, 2, -100], [-100] * 5 + [eight, one, 2]]


def test_completion_loss_is_mean_cross_entropy_over_completion_tokens() -> None:
    model, tok = build_policy("tiny", seed=2)
    task = tasks.get("arithmetic", level=1)
    ids, attention, labels = demonstration_batch(tok, task, [Problem(prompt="2+3=", answer="5")])
    logp = torch.log_softmax(model(ids).logits[0], -1)
    expected = -(logp[4, ids[0, 5]] + logp[5, ids[0, 6]]) / 2
    assert completion_loss(model, ids, attention, labels).item() == pytest.approx(expected.item(), abs=1e-5)


def test_pretrain_saves_atomically_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "stale.txt").write_text("old run")
    cfg = PretrainConfig(preset="tiny", steps=2, batch_size=4, level=1)
    result = pretrain(cfg.build_task(), out, cfg)
    assert result.steps == 2 and result.final_loss > 0
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp or backup folder left
    assert json.loads((out / "pretrain.json").read_text())["config"]["preset"] == "tiny"
    model, tok = load_policy(out)
    assert model.config.hidden_size == 96 and len(tok) == 100
    with pytest.raises(ValueError, match="steps = 0 must be a positive integer"):
        pretrain(cfg.build_task(), out, PretrainConfig(steps=0))


def test_pretraining_stops_at_the_first_check_that_reaches_stop_pass1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = tasks.get("arithmetic", level=1)
    checks: list[tuple[list[str], bool]] = []
    scripted = iter([0.10, 0.39, 0.45, 0.90])

    def fake_accuracy(_model: object, _tok: object, _task: object, problems: list[Problem], greedy: bool = True,
                      **_: object) -> float:
        checks.append(([p.prompt for p in problems], greedy))
        return next(scripted)

    monkeypatch.setattr(pretrain_mod, "accuracy", fake_accuracy)
    cfg = PretrainConfig(level=1, steps=50, batch_size=4, stop_pass1=0.4, check_every=3, check_size=8)
    steps: list[int] = []
    result = pretrain(task, tmp_path / "ckpt", cfg, progress=lambda step, _: steps.append(step))
    assert (result.steps, steps[-1], result.check_pass1) == (9, 9, 0.45)  # checks after steps 3, 6, 9; 0.45 >= 0.4
    assert len(checks) == 3 and all(prompts == checks[0][0] and not greedy for prompts, greedy in checks)
    assert len(checks[0][0]) == 8
    assert all(split_of(task.split_key(Problem(q, "")), task.split_seed, task.test_fraction) == "train"
               for q in checks[0][0])  # never the held-out split
    assert json.loads((tmp_path / "ckpt" / "pretrain.json").read_text())["result"]["steps"] == 9

    monkeypatch.setattr(pretrain_mod, "accuracy", lambda *_, **__: pytest.fail("checked without stop_pass1"))
    full = pretrain(task, tmp_path / "full", PretrainConfig(level=1, steps=12, batch_size=4, check_every=3))
    assert (full.steps, full.check_pass1) == (12, None)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("stop_pass1", 0.0, r"stop_pass1 = 0\.0 must be in \(0, 1\]"),
    ("stop_pass1", 1.5, r"stop_pass1 = 1\.5 must be in \(0, 1\]"),
    ("check_every", 0, r"check_every = 0 must be a positive integer"),
    ("check_size", 0, r"check_size = 0 must be a positive integer"),
])
def test_the_stopping_rule_is_validated(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PretrainConfig(**{field: value}).validate()  # type: ignore[arg-type]


def test_accuracy_matches_the_verifier_on_greedy_rollouts() -> None:
    model, tok = build_policy("tiny", seed=0)
    task = tasks.get("arithmetic", level=1)
    problems = task.sample(6, "test")
    engine = HFEngine(model, tok, dtype=torch.float32)
    texts = engine.generate([p.prompt for p in problems], SamplingParams(greedy=True, max_new_tokens=16)).texts
    expected = sum(task.reward(p, t) for p, t in zip(problems, texts, strict=True)) / 6
    assert accuracy(model, tok, task, problems) == expected
    with pytest.raises(ValueError, match="multi-turn"):
        accuracy(model, tok, tasks.get("guess"), problems)


@pytest.mark.slow
def test_pretraining_learns_single_digit_arithmetic(tmp_path: Path) -> None:
    cfg = PretrainConfig(preset="tiny", level=1, steps=300, batch_size=64, lr=3e-3)
    task = cfg.build_task()
    test, train = task.sample(60, "test"), task.sample(60, "train", seed=7)
    model, tok = build_policy("tiny", seed=cfg.seed)
    assert accuracy(model, tok, task, test) < 0.05
    pretrain(task, tmp_path / "ckpt", cfg)
    model, tok = load_policy(tmp_path / "ckpt")
    assert accuracy(model, tok, task, train) > 0.6
    assert accuracy(model, tok, task, test) > 0.15  # held-out problems: generalisation, not recall
