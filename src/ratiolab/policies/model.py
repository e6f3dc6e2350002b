"""Llama-style causal LM policies: size presets, construction, and loading local checkpoints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from ratiolab.config import ConfigError
from ratiolab.engines.hf_engine import encode_prompt
from ratiolab.policies.tokenizer import build_tokenizer
from ratiolab.tasks.jsonl import first_line


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
    "nano": Preset(hidden_size=64, num_layers=2, intermediate_size=160, num_heads=4),  # ~0.11 M
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
_RESAVE = "save it again with save_pretrained"
_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_policy(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local HF causal-LM checkpoint and its tokenizer with ``from_pretrained`` (no downloads).

    The folder is checked first, each failure a one-line ``ConfigError`` naming the file: a missing or
    unparsable ``config.json``, no weights, a truncated or damaged ``*.safetensors`` (its header must
    describe exactly the file's size), missing or unparsable tokenizer files, a tokenizer without an EOS
    token, or a vocabulary larger than the model's input embedding. A tokenizer saved as a generic
    ``PreTrainedTokenizerFast`` (``tokenizer_class`` ``TokenizersBackend``) loads as that class whatever the
    model family, so its ``tokenizer.json`` tokenizes exactly as it did when saved.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist or is not a folder; pass a folder written "
                          "by save_pretrained (model and tokenizer)")
    config = _json_file(folder / "config.json", "the model config")
    if not isinstance(config, dict) or "model_type" not in config:
        raise ConfigError(f"{folder / 'config.json'} has no model_type; {_RESAVE}")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")):
        raise ConfigError(f"{folder} has no weights (*.safetensors or *.bin); {_RESAVE}")
    for file in weights:
        _check_safetensors(file)
    tokenizer = load_tokenizer(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # torch, safetensors and pickle raise their own types for damaged files
        raise ConfigError(f"the model in {folder} does not load ({first_line(err)}); {_RESAVE}") from err
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, torch.nn.Embedding)
    n_embed = embedding.num_embeddings
    if len(tokenizer) > n_embed:
        raise ConfigError(
            f"tokenizer in {folder} has {len(tokenizer)} tokens but the model embeds only {n_embed}; "
            "save the matching tokenizer or resize the model's embeddings"
        )
    return model, tokenizer


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in ``folder`` (``load_policy``'s checks): one-line ``ConfigError`` for missing or
    unparsable files or no EOS token; the pad token defaults to EOS; left padding."""
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ConfigError(f"{folder} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save the tokenizer to "
                          "the same folder (tokenizer.save_pretrained)")
    settings: Any = {}
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            settings = _json_file(folder / name, "a tokenizer file")
    declared = settings.get("tokenizer_class") if isinstance(settings, dict) else None
    # A generic tokenizer saved next to e.g. a Qwen2 config loads through AutoTokenizer as that family's own
    # class, which rebuilds its pre-tokenizer and adds tokens: load what was saved, as it was saved.
    loader = PreTrainedTokenizerFast if declared in _GENERIC_TOKENIZERS else AutoTokenizer
    try:
        tokenizer = loader.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # tokenizers raises plain Exceptions from Rust
        raise ConfigError(f"the tokenizer in {folder} does not load ({first_line(err)}); save the tokenizer "
                          "again with tokenizer.save_pretrained") from err
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer in {folder} has no EOS token (responses end at it); set eos_token and "
                          "save the tokenizer again")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def check_context(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
    source: str,
) -> None:
    """Raise a ``ConfigError`` when the longest of ``prompts`` (from ``source``) plus ``max_new_tokens`` does not fit
    the model's ``max_position_embeddings`` (checked before a run starts; the engine checks each batch), or a chat
    prompt meets a tokenizer without a chat template. Prompts are encoded as the engine encodes them."""
    try:
        lengths = [len(encode_prompt(tokenizer, p)) for p in prompts]
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from err
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is None or not lengths:
        return
    longest = max(lengths)
    if longest + max_new_tokens > limit:
        raise ConfigError(
            f"{source}: a prompt of {longest} tokens + max_new_tokens = {max_new_tokens} exceeds the model's context "
            f"of {limit} positions (max_position_embeddings); shorten the prompts or lower max_new_tokens"
        )


def _json_file(file: Path, what: str) -> Any:
    if not file.is_file():
        raise ConfigError(f"{file.parent} has no {file.name} ({what}); {_RESAVE}")
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file} ({what}) is not valid JSON ({err}); {_RESAVE}") from err


def _check_safetensors(file: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensor bytes it describes."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little") if size >= 8 else 0
        if not 2 <= n <= size - 8:
            raise ConfigError(f"{file} is truncated or not a safetensors file ({size} bytes, no complete header); "
                              f"{_RESAVE}")
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{file} has a damaged header ({err!r}); {_RESAVE}") from err
    if 8 + n + end != size:
        raise ConfigError(f"{file} is truncated or damaged: {size} bytes where its header describes {8 + n + end}; "
                          f"{_RESAVE}")


def n_params(model: PreTrainedModel) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
