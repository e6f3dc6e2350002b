"""A scalar reward model: a causal-LM trunk with a linear head read at the last token of the response.

The model is a Hugging Face ``*ForSequenceClassification`` with ``num_labels = 1`` (its head ``score``), so a
saved reward model loads with plain ``AutoModelForSequenceClassification.from_pretrained``. ratiolab reads
the head at the last attended position of each row itself (:func:`reward_scores`), with positions that skip
left padding: the same value as the plain model's own pooling on a right-padded row, and correct for the
learner's layout (left-padded prompt, right-padded response) and for tokenizers whose pad token is EOS.

A sequence is ``encode_prompt(prompt)`` (BOS or the chat template, as the engine encodes it), the response's
tokens without special tokens, then EOS: what the policy samples and the learner scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ratiolab.config import ConfigError
from ratiolab.engines.hf_engine import encode_prompt
from ratiolab.engines.sampling import position_ids
from ratiolab.policies.model import build_policy, load_policy, load_tokenizer
from ratiolab.tasks.jsonl import first_line

#: the file a saved reward model keeps its training summary in (held-out accuracy, config)
INFO = "reward_model.json"


def is_reward_model(folder: str | Path) -> bool:
    """Whether ``folder``'s ``config.json`` declares a sequence-classification architecture."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def build_reward_model(
    init: str | Path | None = None, preset: str = "tiny", seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A reward model and its tokenizer: from ``init`` (a policy folder: its trunk, a fresh head; or a reward
    model folder: all of it), else a fresh ``preset`` trunk with the character tokenizer. The head starts
    from ``seed``."""
    if init is not None and is_reward_model(init):
        return load_reward_model(init)
    if init is not None:
        policy, tok = load_policy(init)
    else:
        policy, tok = build_policy(preset, seed=seed)
    settings = {k: v for k, v in policy.config.to_dict().items() if k not in ("id2label", "label2id")}
    config = AutoConfig.for_model(**(settings | {"num_labels": 1, "pad_token_id": tok.pad_token_id}))
    config.architectures = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.load_state_dict(policy.base_model.state_dict())
    _check_head(model, str(init or preset))
    return model, tok


def load_reward_model(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a reward model folder written by ``ratiolab rm train`` (or any ``num_labels = 1``
    sequence-classification checkpoint with its tokenizer); errors name the folder."""
    folder = Path(folder)
    if not is_reward_model(folder):
        raise ConfigError(f"{folder} is not a reward model folder (config.json declares no "
                          "*ForSequenceClassification architecture); train one with ratiolab rm train --out DIR")
    tok = load_tokenizer(folder)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # torch, safetensors raise their own types for damaged files
        raise ConfigError(f"the reward model in {folder} does not load ({first_line(err)}); train it again") from err
    if model.config.num_labels != 1:
        raise ConfigError(f"the reward model in {folder} has num_labels = {model.config.num_labels}; a reward model "
                          "gives one score (num_labels = 1)")
    _check_head(model, str(folder))
    return model.eval(), tok


def _check_head(model: PreTrainedModel, source: str) -> None:
    if not isinstance(getattr(model, "score", None), torch.nn.Module):
        raise ConfigError(f"reward model {source}: {type(model).__name__} has no linear head 'score'; use a model "
                          "family whose sequence-classification class has one (Llama, Qwen2, Mistral, GPT-2)")


def reward_scores(model: PreTrainedModel, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """``[B]`` float32 scores: the head at each row's last attended position (padding anywhere else)."""
    if not bool((attention.sum(-1) > 0).all()):
        raise ValueError("reward_scores: a row has no attended token; every sequence needs at least one")
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids(attention),
                              use_cache=False).last_hidden_state
    last = attention.shape[1] - 1 - attention.flip(-1).long().argmax(-1)
    picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    head = model.score
    assert isinstance(head, torch.nn.Module)
    return head(picked).squeeze(-1).float()


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], responses: list[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention)`` of ``prompt + response + EOS`` per row (module docstring)."""
    rows = [encode_prompt(tokenizer, p) + tokenizer(r, add_special_tokens=False)["input_ids"]
            + [int(tokenizer.eos_token_id)] for p, r in zip(prompts, responses, strict=True)]
    width = max(len(r) for r in rows)
    pad = int(tokenizer.pad_token_id)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids, attention
