from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from ratiolab.policies import PRESETS, build_policy, build_tokenizer, load_policy, n_params, token_logprobs
from ratiolab.policies.tokenizer import ALPHABET


def test_tokenizer_round_trip_through_auto_tokenizer(tmp_path: Path) -> None:
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "12+7=19\nguess 1-15:8? higher #### 42"
    ids = loaded(text)["input_ids"]
    assert ids == tok(text)["input_ids"]
    assert ids[0] == loaded.bos_token_id == 1
    assert len(ids) == len(text) + 1  # one token per character
    assert loaded.decode(ids, skip_special_tokens=True) == text
    assert (loaded.pad_token_id, loaded.eos_token_id) == (0, 2)
    assert len(loaded) == 4 + len(ALPHABET) == 100


@pytest.mark.parametrize(("preset", "target"), [("tiny", 0.4e6), ("small", 1.6e6), ("base", 3.0e6), ("nano", 0.11e6)])
def test_preset_parameter_counts(preset: str, target: float) -> None:
    model, _ = build_policy(preset)
    assert abs(n_params(model) - target) <= 0.25 * target


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="tiny, small, base"):
        build_policy("huge")
    assert set(PRESETS) == {"tiny", "small", "base", "nano"}


def test_load_policy_round_trip_and_errors(tmp_path: Path) -> None:
    model, tok = build_policy("tiny", seed=3)
    good = tmp_path / "good"
    model.save_pretrained(good)
    tok.save_pretrained(good)
    loaded, loaded_tok = load_policy(good)
    ids = torch.tensor([tok("3+4=")["input_ids"]])
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert loaded_tok.padding_side == "left"

    no_tok = tmp_path / "no_tok"
    model.save_pretrained(no_tok)
    with pytest.raises(ValueError, match="no tokenizer files"):
        load_policy(no_tok)
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_policy(tmp_path)

    small_vocab = tmp_path / "small_vocab"
    model.resize_token_embeddings(50)
    model.save_pretrained(small_vocab)
    tok.save_pretrained(small_vocab)
    with pytest.raises(ValueError, match="100 tokens but the model embeds only 50"):
        load_policy(small_vocab)
    assert json.loads((good / "config.json").read_text())["vocab_size"] == 100


def test_token_logprobs_matches_manual_softmax_and_skips_left_padding() -> None:
    model, tok = build_policy("tiny", seed=1)
    prompt, response = tok("12+7=")["input_ids"], tok("19", add_special_tokens=False)["input_ids"]
    full = torch.tensor([prompt + response])
    logp, ent, outside, _ = token_logprobs(model, full, torch.ones_like(full), len(prompt), temperature=0.7)
    assert not outside.any()  # the full vocabulary is everyone's support
    logits = model(full).logits[0] / 0.7
    ref = torch.log_softmax(logits, -1)
    for t, token in enumerate(response):
        assert logp[0, t].item() == pytest.approx(ref[len(prompt) + t - 1, token].item(), abs=1e-5)
        p = ref[len(prompt) + t - 1].exp()
        assert ent[0, t].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)
    padded = torch.tensor([[0, 0, 0, *prompt, *response]])
    mask = torch.tensor([[0, 0, 0] + [1] * (len(prompt) + len(response))])
    logp_pad = token_logprobs(model, padded, mask, len(prompt) + 3, temperature=0.7).logp
    torch.testing.assert_close(logp_pad, logp, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(model, full, torch.ones_like(full), len(prompt), temperature=0.0)
