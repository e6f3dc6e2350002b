"""Incremental forward passes with a KV cache, used by ``HFEngine``'s decode loop.

``HFDecoder`` calls the model's own forward on a ``DynamicCache`` (any HF causal LM).
``FusedLlamaDecoder`` re-implements the Llama forward for decoding (Llama with or without projection
biases, and Qwen2, which is Llama with q/k/v biases): fused QKV and gate/up projections, a preallocated
KV cache and one boolean attention mask per step, which removes most per-step Python overhead for
small models. ``CompiledLlamaDecoder`` runs its decode steps
through ``torch.compile`` on static shapes. All return the logits of the last position.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM, PreTrainedModel, Qwen2ForCausalLM

from ratiolab.engines.sampling import position_ids

FusedLayer = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None,
    torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None,
]
"""One layer's weights in ``FusedLlamaDecoder``: ``(norm_in, w_qkv, b_qkv, w_o, b_o, norm_post, w_gate_up, b_gate_up,
w_down, b_down)``, a bias ``None`` where the projections have none."""


class Decoder(Protocol):
    """``prefill`` once with left-padded prompts, then ``step`` one token per row."""

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...


class HFDecoder:
    """The model's forward on a ``DynamicCache``; positions skip left padding."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.cache = DynamicCache(config=model.config)
        self.attention = torch.zeros(0)
        self.next_position = torch.zeros(0)

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        positions = position_ids(prompt_mask)
        self.attention, self.next_position = prompt_mask, positions[:, -1:] + 1
        out = self.model(
            input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
            cache=self.cache, use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.attention = F.pad(self.attention, (0, 1), value=1)
        out = self.model(
            input_ids=tokens[:, None], attention_mask=self.attention, position_ids=self.next_position,
            cache=self.cache, use_cache=True,
        )
        self.next_position = self.next_position + 1
        return out.logits[:, -1]


def supports_fused(model: PreTrainedModel) -> bool:
    """Whether ``FusedLlamaDecoder`` reproduces ``model``'s forward: Llama or Qwen2 (full attention in every
    layer), SiLU MLP."""
    cfg = model.config
    full = not getattr(cfg, "use_sliding_window", False) and all(
        t == "full_attention" for t in getattr(cfg, "layer_types", None) or ())
    return isinstance(model, (LlamaForCausalLM, Qwen2ForCausalLM)) and cfg.hidden_act == "silu" and full


def _cat(*biases: torch.Tensor | None) -> torch.Tensor | None:
    """The fused bias of fused projections (``None`` when they have none)."""
    if all(b is None for b in biases):
        return None
    assert all(b is not None for b in biases), "a fused projection mixes biased and unbiased parts"
    return torch.cat([b for b in biases if b is not None])


class FusedLlamaDecoder:
    """Llama decoding with fused projections and a static ``[B, kv_heads, max_len, head_dim]`` cache per layer.

    Attention: a query at position ``i`` sees keys ``j <= i`` that are not left padding (a padding
    query sees itself, so no softmax row is empty).
    """

    def __init__(self, model: LlamaForCausalLM | Qwen2ForCausalLM, batch: int, max_len: int) -> None:
        if not supports_fused(model):
            raise ValueError("FusedLlamaDecoder needs a Llama or Qwen2 model with SiLU and full attention; use "
                             "backend='loop'")
        cfg = model.config
        self.model = model
        self.n_heads: int = cfg.num_attention_heads
        self.n_kv: int = cfg.num_key_value_heads or self.n_heads
        self.head_dim: int = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps: float = cfg.rms_norm_eps
        dtype = model.lm_head.weight.dtype
        shape = (batch, self.n_kv, max_len, self.head_dim)  # one tensor per layer
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.key_valid = torch.zeros(batch, max_len, dtype=torch.bool)
        self.length = 0
        self.next_position = torch.zeros(batch, 1, dtype=torch.long)
        self._read_weights()

    def _read_weights(self) -> None:
        """Fuse the model's current weights (a decoder lives for one generation with one version)."""
        inner = self.model.model
        self.layers: list[FusedLayer] = [
            (
                layer.input_layernorm.weight,
                torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                _cat(attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias),
                attn.o_proj.weight, attn.o_proj.bias,
                layer.post_attention_layernorm.weight,
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                _cat(mlp.gate_proj.bias, mlp.up_proj.bias),
                mlp.down_proj.weight, mlp.down_proj.bias,
            )
            for layer, attn, mlp in ((layer, layer.self_attn, layer.mlp) for layer in inner.layers)
        ]

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Llama RMSNorm, in fp32 then cast back, as ``LlamaRMSNorm``."""
        xf = x.float()
        return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d), masked) v: written out in fp32 (faster than CPU SDPA for short
        queries), SDPA otherwise (CPU bf16 batched matmuls are slow without bf16 units)."""
        if q.dtype != torch.float32:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=self.head_dim**-0.5, enable_gqa=self.n_kv != self.n_heads
            )
        if self.n_kv != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1, dtype=torch.float32)
        return torch.matmul(weights.to(v.dtype), v)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, width = input_ids.shape
        start, end = self.length, self.length + width
        self.key_valid[:, start:end] = valid
        inner = self.model.model
        x = inner.embed_tokens(input_ids)
        cos, sin = (t.unsqueeze(1) for t in inner.rotary_emb(x, positions))
        q_pos = torch.arange(start, end)[:, None]
        k_pos = torch.arange(end)[None, :]
        visible = (k_pos <= q_pos) & (self.key_valid[:, None, :end] | (k_pos == q_pos))
        mask = visible[:, None]
        n_q, n_kv = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        for i, (w_in, w_qkv, b_qkv, w_o, b_o, w_post, w_gate_up, b_gate_up, w_down, b_down) in enumerate(self.layers):
            q, k, v = F.linear(self._rms(x, w_in), w_qkv, b_qkv).split([n_q, n_kv, n_kv], dim=-1)
            q = q.view(batch, width, -1, self.head_dim).transpose(1, 2)
            k = k.view(batch, width, -1, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            self.keys[i][:, :, start:end] = k * cos + _rotate_half(k) * sin
            self.values[i][:, :, start:end] = v.view(batch, width, -1, self.head_dim).transpose(1, 2)
            attn = self._attend(q, self.keys[i][:, :, :end], self.values[i][:, :, :end], mask)
            x = x + F.linear(attn.transpose(1, 2).reshape(batch, width, -1), w_o, b_o)
            gate, up = F.linear(self._rms(x, w_post), w_gate_up, b_gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w_down, b_down)
        self.length = end
        return self.model.lm_head(inner.norm(x[:, -1]))

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        positions = position_ids(prompt_mask)
        self.next_position = positions[:, -1:] + 1
        return self._forward(prompt_ids, positions, prompt_mask.bool())

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self._forward(tokens[:, None], self.next_position, torch.ones(tokens.shape[0], 1, dtype=torch.bool))
        self.next_position = self.next_position + 1
        return logits


class CompiledLlamaDecoder(FusedLlamaDecoder):
    """``FusedLlamaDecoder`` whose decode steps run as one ``torch.compile`` graph (inductor; the prefill stays eager).

    Every step has the same shapes: the new key/value is written in place at the current slot
    (``index_copy_``) and attention spans the whole ``max_len`` cache, where ``key_valid`` masks the
    left padding and the slots not yet written. The graph is shared by all instances (weights and
    cache are arguments, so new weights need no recompile); it is first compiled for one
    ``(batch, max_len)``, and a second shape makes dynamo recompile it once with symbolic sizes
    (automatic dynamic shapes), which then serves every shape.
    """

    def __init__(self, model: LlamaForCausalLM | Qwen2ForCausalLM, batch: int, max_len: int) -> None:
        super().__init__(model, batch, max_len)
        inner = model.model
        probe = torch.zeros(1, dtype=model.lm_head.weight.dtype)
        cos, sin = inner.rotary_emb(probe, torch.arange(max_len)[None])
        self.cos, self.sin = cos[0], sin[0]  # [max_len, head_dim]: positions never exceed the slot
        self.slot = torch.zeros(1, dtype=torch.long)

    def _read_weights(self) -> None:
        super()._read_weights()
        inner = self.model.model
        self.embed, self.final_norm, self.head = inner.embed_tokens.weight, inner.norm.weight, self.model.lm_head.weight

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        logits = super().prefill(prompt_ids, prompt_mask)
        self.slot.fill_(self.length)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.length >= self.key_valid.shape[1]:
            raise ValueError(f"the cache holds max_len={self.key_valid.shape[1]} positions; it is full")
        logits = _compiled_step()(self, tokens, self.next_position[:, 0], self.slot, self.key_valid,
                                self.keys, self.values, self.layers)
        self.slot += 1
        self.next_position = self.next_position + 1
        self.length += 1
        return logits

    def _static_step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        slot: torch.Tensor,
        key_valid: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        layers: list[FusedLayer],
    ) -> torch.Tensor:
        """One token per row at cache ``slot``; ``positions`` ``[B]`` are the RoPE positions."""
        batch, hd = tokens.shape[0], self.head_dim
        key_valid.index_fill_(1, slot, True)
        mask = key_valid[:, None, None, :]
        x = F.embedding(tokens, self.embed)
        cos, sin = self.cos[positions][:, None, None], self.sin[positions][:, None, None]
        n_q, n_kv = self.n_heads * hd, self.n_kv * hd
        for i, (w_in, w_qkv, b_qkv, w_o, b_o, w_post, w_gate_up, b_gate_up, w_down, b_down) in enumerate(layers):
            q, k, v = F.linear(self._rms(x, w_in), w_qkv, b_qkv).split([n_q, n_kv, n_kv], dim=-1)
            q = q.view(batch, -1, 1, hd)
            k = k.view(batch, -1, 1, hd)
            keys[i].index_copy_(2, slot, k * cos + _rotate_half(k) * sin)
            values[i].index_copy_(2, slot, v.view(batch, -1, 1, hd))
            attn = self._attend(q * cos + _rotate_half(q) * sin, keys[i], values[i], mask)
            x = x + F.linear(attn.reshape(batch, n_q), w_o, b_o)
            gate, up = F.linear(self._rms(x, w_post), w_gate_up, b_gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w_down, b_down)
        return F.linear(self._rms(x, self.final_norm), self.head)


@functools.cache
def _compiled_step() -> Callable[..., torch.Tensor]:
    """The compiled ``_static_step``, built on first use (``torch.compile`` costs ~1 s to import)."""
    return torch.compile(CompiledLlamaDecoder._static_step, fullgraph=True)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
