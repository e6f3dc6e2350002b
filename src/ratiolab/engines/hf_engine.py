"""KV-cached batched sampling from a Hugging Face causal LM (DESIGN §3 engine contract).

Backends share the prompt handling and the ``Rollout`` output:

- ``"fused"``: a hand-written decode loop (one prefill over left-padded prompts, then one
  forward per token) on ``FusedLlamaDecoder`` — Llama and Qwen2 models only, the fastest on CPU;
- ``"compiled"``: ``"fused"`` with its decode step compiled by ``torch.compile`` (``CompiledLlamaDecoder``);
  the first batch, and the first of another shape, pay the compilation (tens of seconds on CPU);
- ``"loop"``: the same loop on the model's own forward with a ``DynamicCache`` (any HF model);
- ``"generate"``: ``model.generate`` with the same sampling warpers; ``behav_logp`` comes from
  its processed scores. No mid-generation hook.
- ``"auto"`` (default): ``"fused"`` when the model supports it, else ``"loop"``.

A model family the fused decoder does not reproduce (GPT-2, ...; see ``decoders.supports_fused``)
asked for ``"fused"``/``"compiled"`` runs ``"loop"`` instead, and a model whose forward takes no
``position_ids`` (which the loop needs to skip left padding) runs ``"generate"``; each fallback logs one
line and never fails.

Prompt strings are encoded by :func:`encode_prompt`: a ``tasks.ChatPrompt`` through the tokenizer's
chat template, any other string with the tokenizer's special tokens.

In the loop backends an optional hook runs between two decode steps and may call
``load_weights``: later tokens come from the new weights and record the new version, so one
sequence can carry two policy versions (partial rollouts). On such a swap the engine re-encodes
the prompt and the tokens generated so far with the new weights (one prefill) instead of keeping
the KV cache the old weights wrote: a token tagged ``v`` then has ``behav_logp`` of
``pi_v(token | prefix)`` exactly, which is what the exact old-logit strategies score it with (an
fp32 engine gives ``w_disc = 1``). Keeping the stale cache would mix two versions inside one
forward pass, a distribution no version of the policy defines.

The engine owns a copy of the weights in its own ``dtype`` (bf16 by default), separate from the
learner's fp32 weights, so ``behav_logp`` differs from an fp32 rescoring (the ``w_disc`` term).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from transformers import (
    GenerationConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2ForCausalLM,
)

from ratiolab.engines.decoders import CompiledLlamaDecoder, Decoder, FusedLlamaDecoder, HFDecoder, supports_fused
from ratiolab.engines.sampling import Rollout, SamplingParams, sampling_logprobs
from ratiolab.tasks.jsonl import ChatPrompt

Backend = Literal["auto", "fused", "compiled", "loop", "generate"]
Prompts = Sequence[str] | Sequence[Sequence[int]]
"""Prompt strings (tokenized with the tokenizer's special tokens) or token-id lists (used as given)."""
_InFlight = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, SamplingParams]
StepHook = Callable[[int], None]
"""Called as ``hook(step)`` after token ``step`` was sampled and before the next forward pass."""
log = logging.getLogger(__name__)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of ``prompt``: a :class:`~ratiolab.tasks.jsonl.ChatPrompt` rendered by the tokenizer's chat
    template with the generation prompt (``apply_chat_template``; no special tokens added on top, the template
    holds its own), any other string with the tokenizer's special tokens (BOS)."""
    if not isinstance(prompt, ChatPrompt):
        ids: list[int] = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return ids
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("a chat prompt (task.params.chat_template=true) needs a tokenizer with a chat_template; "
                         "set tokenizer.chat_template and save the tokenizer again, or drop chat_template")
    text = tokenizer.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)
    assert isinstance(text, str)
    chat_ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return chat_ids


def resolve_backend(model: PreTrainedModel, backend: Backend) -> Backend:
    """The backend that runs ``model``: ``auto``/``fused``/``compiled`` need ``supports_fused`` (else ``loop``),
    and ``loop`` a forward that takes ``position_ids`` (else ``generate``); a fallback logs one line, once."""
    chosen = backend
    if chosen in ("auto", "fused", "compiled"):
        chosen = ("compiled" if backend == "compiled" else "fused") if supports_fused(model) else "loop"
    if chosen == "loop" and "position_ids" not in inspect.signature(model.forward).parameters:
        chosen = "generate"
    if chosen != backend and not (backend == "auto" and chosen == "fused"):
        _fallback_message(type(model).__name__, chosen)
    return chosen


@functools.cache
def _fallback_message(model: str, chosen: str) -> None:
    """One line per model class and backend it falls back to, however many engines are built."""
    why = "has no fused decoder (Llama, Qwen2 only)" if chosen == "loop" else "takes no position_ids (loop needs them)"
    log.warning("sampling: %s %s; using the %r backend", model, why, chosen)


class HFEngine:
    """Sampler over a private copy of ``model`` in ``dtype``; ``version`` tags the weights it holds."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        dtype: torch.dtype = torch.bfloat16,
        backend: Backend = "auto",
        seed: int = 0,
        version: int = 0,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        """``dtype``: precision of the engine's weights. ``compute_dtype`` (optional): keep the weights
        rounded to ``dtype`` but compute in ``compute_dtype`` — e.g. bf16-rounded weights in fp32 on
        CPUs without bf16 matmul units, which keeps the precision gap at fp32 speed.
        """
        if backend not in ("auto", "fused", "compiled", "loop", "generate"):
            raise ValueError(f"backend={backend!r} is not valid; use 'auto', 'fused', 'compiled', 'loop' or 'generate'")
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("tokenizer needs eos_token and pad_token set")
        self.dtype = dtype
        self.compute_dtype = compute_dtype if compute_dtype is not None else dtype
        engine_model = copy.deepcopy(model)
        engine_model.to(self.compute_dtype)  # type: ignore[arg-type]
        self.model: PreTrainedModel = engine_model.eval()
        self._round_weights()
        self.tokenizer = tokenizer
        self.backend: Backend = resolve_backend(model, backend)
        self.version = version
        self.generator = torch.Generator().manual_seed(seed)
        self._inflight: _InFlight | None = None

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Copy ``state_dict`` (any dtype) into the engine's weights and tag them ``version``."""
        with torch.no_grad():
            self.model.load_state_dict(dict(state_dict), strict=True)
        self._round_weights()
        self.version = version

    @torch.no_grad()
    def _round_weights(self) -> None:
        if self.compute_dtype != self.dtype:
            for param in self.model.parameters():
                param.copy_(param.to(self.dtype))

    def inflight_rollout(self) -> Rollout:
        """The batch generated so far, as a ``Rollout`` (only inside an ``on_step`` hook)."""
        if self._inflight is None:
            raise RuntimeError("inflight_rollout() is only available inside an on_step hook")
        prompt_ids, prompt_mask, tokens, logp, version, sampling = self._inflight
        texts = [self.decode(row.tolist()) for row in prompt_ids]
        return self._rollout(texts, prompt_ids, prompt_mask, tokens, logp, version, sampling)

    def encode_prompts(self, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[B, P]`` ids and mask; strings are encoded by :func:`encode_prompt`."""
        if not prompts:
            raise ValueError("prompts is empty")
        ids = [encode_prompt(self.tokenizer, p) if isinstance(p, str) else list(p) for p in prompts]
        width = max(len(x) for x in ids)
        pad = int(self.tokenizer.pad_token_id)
        prompt_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], dtype=torch.long)
        prompt_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long)
        return prompt_ids, prompt_mask

    @torch.no_grad()
    def generate(
        self,
        prompts: Prompts,
        sampling: SamplingParams,
        seed: int | None = None,
        on_step: StepHook | None = None,
    ) -> Rollout:
        """Sample one response per prompt; ``seed`` (else the engine's generator) fixes the draw."""
        prompt_ids, prompt_mask = self.encode_prompts(prompts)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and prompt_ids.shape[1] + sampling.max_new_tokens > limit:
            raise ValueError(
                f"prompts of {prompt_ids.shape[1]} tokens + max_new_tokens={sampling.max_new_tokens} exceed the "
                f"model's maximum length of {limit} positions; shorten the prompts or lower max_new_tokens"
            )
        generator = torch.Generator().manual_seed(seed) if seed is not None else self.generator
        if self.backend == "generate":
            if on_step is not None:
                raise ValueError("on_step needs a loop backend; model.generate cannot swap weights mid-way")
            tokens, logp, version = self._generate_hf(prompt_ids, prompt_mask, sampling, generator)
        else:
            tokens, logp, version = self._decode_loop(prompt_ids, prompt_mask, sampling, generator, on_step)
        texts = [p if isinstance(p, str) else self.decode(p) for p in prompts]
        return self._rollout(texts, prompt_ids, prompt_mask, tokens, logp, version, sampling)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids to text, special tokens dropped."""
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        assert isinstance(text, str)
        return text

    def _stop_ids(self, sampling: SamplingParams) -> torch.Tensor:
        return torch.tensor([int(self.tokenizer.eos_token_id), *sampling.stop_token_ids], dtype=torch.long)

    def _decoder(self, batch: int, max_len: int) -> Decoder:
        if self.backend in ("fused", "compiled"):
            assert isinstance(self.model, (LlamaForCausalLM, Qwen2ForCausalLM))
            fused = CompiledLlamaDecoder if self.backend == "compiled" else FusedLlamaDecoder
            return fused(self.model, batch, max_len)
        return HFDecoder(self.model)

    def _decode_loop(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        sampling: SamplingParams,
        generator: torch.Generator,
        on_step: StepHook | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, steps = prompt_ids.shape[0], sampling.max_new_tokens
        stop_ids, pad = self._stop_ids(sampling), int(self.tokenizer.pad_token_id)
        tokens = torch.full((batch, steps), pad, dtype=torch.long)
        logp = torch.zeros(batch, steps)
        version = torch.full((batch, steps), -1, dtype=torch.long)
        alive = torch.ones(batch, dtype=torch.bool)
        decoder = self._decoder(batch, prompt_ids.shape[1] + steps)
        logits, logits_version = decoder.prefill(prompt_ids, prompt_mask), self.version
        for step in range(steps):
            token, token_logp = _draw(logits, sampling, generator)
            tokens[:, step] = torch.where(alive, token, pad)
            logp[:, step] = torch.where(alive, token_logp, 0.0)
            version[:, step] = torch.where(alive, logits_version, -1)
            alive &= ~torch.isin(token, stop_ids)
            if not alive.any() or step == steps - 1:
                return tokens[:, : step + 1], logp[:, : step + 1], version[:, : step + 1]
            if on_step is not None:
                self._inflight = (prompt_ids, prompt_mask, tokens[:, : step + 1], logp[:, : step + 1],
                                  version[:, : step + 1], sampling)
                on_step(step)
                self._inflight = None
                if self.version != logits_version:  # re-encode the prefix with the new weights
                    ids = torch.cat([prompt_ids, tokens[:, : step + 1]], dim=1)
                    mask = torch.cat([prompt_mask, (version[:, : step + 1] >= 0).long()], dim=1)
                    decoder = self._decoder(batch, prompt_ids.shape[1] + steps)
                    logits, logits_version = decoder.prefill(ids, mask), self.version
                    continue
            logits, logits_version = decoder.step(token), self.version
        raise AssertionError("unreachable: the loop returns at its last step")

    def _generate_hf(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        sampling: SamplingParams,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        config = GenerationConfig(
            do_sample=not sampling.greedy,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self._stop_ids(sampling).tolist(),
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_scores=not sampling.greedy,
        )
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.model.generate(  # type: ignore[operator]
                input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config
            )
        tokens = out.sequences[:, prompt_ids.shape[1] :]
        alive = _alive_before(tokens, self._stop_ids(sampling))
        if sampling.greedy:
            logp = torch.zeros(tokens.shape)
        else:
            scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)
            logp = scores.gather(-1, tokens[..., None]).squeeze(-1).masked_fill(~alive, 0.0)
        version = torch.where(alive, self.version, -1)
        return tokens.masked_fill(~alive, int(self.tokenizer.pad_token_id)), logp, version

    def _rollout(
        self,
        prompts: list[str],
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        tokens: torch.Tensor,
        logp: torch.Tensor,
        version: torch.Tensor,
        sampling: SamplingParams,
    ) -> Rollout:
        mask = version >= 0
        lengths = mask.sum(dim=1)
        last = tokens.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        finished = torch.isin(last, self._stop_ids(sampling)) & (lengths > 0)
        texts = [self.decode(row[: int(n)].tolist()) for row, n in zip(tokens, lengths, strict=True)]
        return Rollout(
            prompts=prompts, prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens,
            mask=mask.float(), behav_logp=logp, version=version, finished=finished, lengths=lengths,
            texts=texts,
        )


def _draw(
    logits: torch.Tensor, sampling: SamplingParams, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row and its log-prob under the sampling distribution (0 for greedy)."""
    if sampling.greedy:
        return logits.argmax(dim=-1), torch.zeros(logits.shape[0])
    logp = sampling_logprobs(logits, sampling)
    token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return token, logp.gather(-1, token[:, None]).squeeze(-1)


def _alive_before(tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """True up to and including each row's first stop token."""
    stops = torch.isin(tokens, stop_ids).long()
    return (stops.cumsum(dim=1) - stops) == 0
