"""Llama-style causal LM policies: size presets, construction, and loading local checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ratiolab.policies.tokenizer import build_tokenizer


@dataclass(frozen=True)
class Preset:
    """Transformer shape; parameter counts are for the 100-symbol character vocabulary."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    max_positions: int = 512


PRESETS: dict[str, Preset] = {
    "tiny": Preset(hidden_size=96, num_layers=4, intermediate_size=224, num_heads=4),  # ~0.42 M
    "small": Preset(hidden_size=128, num_layers=6, intermediate_size=512, num_heads=4),  # ~1.6 M
    "base": Preset(hidden_size=192, num_layers=6, intermediate_size=576, num_heads=6),  # ~2.9 M
}


def build_policy(
    preset: str = "small", tokenizer: PreTrainedTokenizerBase | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A freshly initialised ``LlamaForCausalLM`` of ``preset`` and its tokenizer (default: characters)."""

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    shape = PRESETS[preset]
    tok = tokenizer if tokenizer is not None else build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        intermediate_size=shape.intermediate_size,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_positions,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tok


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_policy(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local HF causal-LM checkpoint and its tokenizer with ``from_pretrained`` (no downloads).

    Raises ValueError when ``path`` lacks ``config.json``, weights or tokenizer files, or when
    the tokenizer's vocabulary does not fit the model's input embedding.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"policy path {str(folder)!r} is not a directory")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json; save the model with save_pretrained")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ValueError(f"{folder} has no weights (*.safetensors or *.bin); use save_pretrained")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ValueError(f"{folder} has no tokenizer files; save the tokenizer to the same folder")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, torch.nn.Embedding)
    n_embed = embedding.num_embeddings
    if len(tokenizer) > n_embed:
        raise ValueError(
            f"tokenizer in {folder} has {len(tokenizer)} tokens but the model embeds only {n_embed}; "
            "save the matching tokenizer or resize the model's embeddings"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def n_params(model: PreTrainedModel) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
