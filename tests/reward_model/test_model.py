"""The reward model: scores read at the last response token, plain-transformers round trip, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ratiolab import tasks
from ratiolab.config import ConfigError
from ratiolab.policies import build_policy, load_policy
from ratiolab.policies.pretrain import PretrainConfig, pretrain
from ratiolab.reward_model import (
    RMTrainConfig,
    build_reward_model,
    generate_pairs,
    load_reward_model,
    reward_scores,
    train_reward_model,
    write_pairs,
)
from ratiolab.reward_model.model import encode_texts
from ratiolab.reward_model.train import pair_accuracy

PROMPTS = ["12+7=", "3*4=", "45-9="]
ANSWERS = ["19", "12", "3600"]


def test_trunk_comes_from_the_policy_and_the_head_from_the_seed(policy_dir: Path) -> None:
    policy, _ = load_policy(policy_dir)
    rm, tok = build_reward_model(policy_dir, seed=1)
    for name, p in policy.base_model.state_dict().items():
        assert torch.equal(p, rm.base_model.state_dict()[name])
    other, _ = build_reward_model(policy_dir, seed=2)
    assert not torch.equal(rm.score.weight, other.score.weight)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tok.pad_token_id


def test_plain_transformers_round_trip_gives_the_same_scores(rm_dirs: list[Path]) -> None:
    ours, tok = load_reward_model(rm_dirs[0])
    plain = AutoModelForSequenceClassification.from_pretrained(rm_dirs[0]).eval()
    plain_tok = AutoTokenizer.from_pretrained(rm_dirs[0])
    ids, attention = encode_texts(tok, PROMPTS, ANSWERS)  # right-padded
    assert ids.tolist()[0][:9] == [tok.bos_token_id, *plain_tok("12+7=19", add_special_tokens=False)["input_ids"],
                                   tok.eos_token_id]
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=attention).logits.squeeze(-1)
        got = reward_scores(ours, ids, attention)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.unique().numel() == 3


def test_scores_do_not_depend_on_padding_layout(rm_dirs: list[Path]) -> None:
    """The learner's layout (left-padded prompt, right-padded response) scores as the right-padded rows."""
    model, tok = load_reward_model(rm_dirs[0])
    ids, attention = encode_texts(tok, PROMPTS, ANSWERS)
    shifted = torch.nn.functional.pad(ids, (3, 0), value=tok.pad_token_id)
    shifted_att = torch.nn.functional.pad(attention, (3, 0))
    with torch.no_grad():
        torch.testing.assert_close(reward_scores(model, shifted, shifted_att), reward_scores(model, ids, attention),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no attended token"):
        reward_scores(model, ids, torch.zeros_like(attention))


def test_loading_refuses_a_policy_folder(policy_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not a reward model folder"):
        load_reward_model(policy_dir)


@pytest.mark.parametrize(("loss", "steps"), [("bt", 60), ("crm", 30)])
def test_loss_falls_on_a_small_pair_file(tmp_path: Path, loss: str, steps: int) -> None:
    """A nano RM fits 16 pairs (train accuracy 1); PPO-M's ``combined`` CRM loss holds the plain pair term.
    The result and config are saved with the model."""
    pairs = generate_pairs(tasks.get("arithmetic"), 16, seed=3)
    path = write_pairs(tmp_path / "p.jsonl", pairs)
    cfg = RMTrainConfig(pairs=str(path), preset="nano", steps=steps, batch_size=16, lr=3e-3, eval_pairs=20, loss=loss,
                        crm_variant="combined")
    (result,) = train_reward_model(cfg, tmp_path / "rm")
    assert result.final_loss < 0.6 * result.first_loss
    model, tok = load_reward_model(tmp_path / "rm")
    assert pair_accuracy(model, tok, pairs) == 1.0
    info = json.loads((tmp_path / "rm" / "reward_model.json").read_text())
    assert info["result"]["eval_accuracy"] == result.eval_accuracy and info["config"]["loss"] == loss


def test_ensemble_trains_members_from_different_seeds(tmp_path: Path) -> None:
    cfg = RMTrainConfig(preset="nano", steps=2, batch_size=4, n_pairs=8, eval_pairs=8, ensemble=2, seed=5)
    results = train_reward_model(cfg, tmp_path / "ens")
    assert [Path(r.out_dir).name for r in results] == ["member-0", "member-1"]
    a, _ = load_reward_model(tmp_path / "ens" / "member-0")
    b, _ = load_reward_model(tmp_path / "ens" / "member-1")
    assert not torch.equal(a.score.weight, b.score.weight)
    assert json.loads((tmp_path / "ens" / "member-1" / "reward_model.json").read_text())["config"]["seed"] == 6


@pytest.mark.parametrize(("change", "match"), [
    ({"label_noise": 1.5}, "label_noise"), ({"steps": 0}, "steps"), ({"crm_variant": "x"}, "crm_variant"),
    ({"preset": "huge"}, "preset"), ({"task": "nope"}, "task 'nope'"),
    ({"pairs": "p.jsonl", "label_noise": 0.1}, "label_noise applies to generated pairs"),
])
def test_config_errors_name_the_field(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RMTrainConfig(**change).validate()


@pytest.mark.slow
def test_held_out_pair_accuracy_beats_chance_from_a_pretrained_trunk(tmp_path: Path) -> None:
    """From a nano policy pre-trained on arithmetic, 400 BT steps give held-out pair accuracy well above 0.5
    on 200 test-split pairs (0.5 +- 0.035 by chance); measured about 0.6-0.7."""
    task = tasks.get("arithmetic")
    pretrain(task, tmp_path / "policy", PretrainConfig(preset="nano", steps=400, lr=3e-3))
    cfg = RMTrainConfig(init=str(tmp_path / "policy"), steps=400, lr=3e-4)
    (result,) = train_reward_model(cfg, tmp_path / "rm")
    assert result.final_loss < result.first_loss - 0.05
    assert result.eval_accuracy > 0.57
    assert build_policy("nano")[1].get_vocab() == load_reward_model(tmp_path / "rm")[1].get_vocab()


def test_an_rm_folder_as_init_continues_that_rm(rm_dirs: list[Path]) -> None:
    """PPO-M trains its calibrated RM from the base RM: ``init`` = an RM folder keeps its head too."""
    base, _ = load_reward_model(rm_dirs[0])
    again, _ = build_reward_model(rm_dirs[0], seed=9)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), again.state_dict().values(), strict=True))
