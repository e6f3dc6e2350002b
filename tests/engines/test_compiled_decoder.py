"""The ``compiled`` backend against the model's own forward and the eager ``fused`` backend.

All tests use one shape (8 prompts, 8 new tokens), so ``torch.compile`` runs once per session
(20-40 s on 2 cores without inductor's on-disk cache, hence ``slow``).
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from ratiolab.engines import HFEngine, Rollout, SamplingParams
from ratiolab.engines.decoders import CompiledLlamaDecoder, HFDecoder
from ratiolab.policies import build_policy

pytestmark = pytest.mark.slow
PROMPTS = ["12+7=", "3*4=", "123-45=", "9=", "8*8=", "1+1=", "70-9=", "5*21="]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def policy() -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    model, tok = build_policy("tiny", seed=0)
    assert isinstance(model, LlamaForCausalLM)
    return model.eval(), tok


def test_logits_match_hf_forward(policy: tuple[LlamaForCausalLM, PreTrainedTokenizerBase]) -> None:
    model, tok = policy
    ids, mask = HFEngine(model, tok, dtype=torch.float32).encode_prompts(PROMPTS)
    tokens = torch.randint(3, len(tok), (NEW_TOKENS, len(PROMPTS)), generator=torch.Generator().manual_seed(0))
    compiled = CompiledLlamaDecoder(model, len(PROMPTS), ids.shape[1] + NEW_TOKENS)
    reference = HFDecoder(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled.prefill(ids, mask), reference.prefill(ids, mask), atol=1e-5, rtol=0)
        for step_tokens in tokens:  # the left padding differs per row, so positions and masks do too
            torch.testing.assert_close(compiled.step(step_tokens), reference.step(step_tokens), atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="cache holds max_len"):
            compiled.step(tokens[0])


def test_samples_equal_fused_backend(policy: tuple[LlamaForCausalLM, PreTrainedTokenizerBase]) -> None:
    """Same seed, same draws: the logits differ by ~1e-7 (another summation order), far below any
    gap that would move a multinomial draw, so tokens are equal and log-probs agree to 1e-5."""
    model, tok = policy
    other, _ = build_policy("tiny", seed=1)
    engines = {b: HFEngine(model, tok, dtype=torch.float32, backend=b) for b in ("compiled", "fused")}  # type: ignore[arg-type]
    sampling = SamplingParams(temperature=0.8, top_k=20, top_p=0.9, max_new_tokens=NEW_TOKENS)
    for seed in range(3):
        compiled, fused = (e.generate(PROMPTS, sampling, seed=seed) for e in engines.values())
        assert compiled.mask.sum() > 3 * len(PROMPTS)
        assert torch.equal(compiled.tokens, fused.tokens) and torch.equal(compiled.version, fused.version)
        torch.testing.assert_close(compiled.behav_logp, fused.behav_logp, atol=1e-5, rtol=0)

    def swapped(engine: HFEngine) -> Rollout:
        def hook(step: int) -> None:
            if step == 2:
                engine.load_weights(other.state_dict(), version=1)

        return engine.generate(PROMPTS, sampling, seed=9, on_step=hook)

    compiled, fused = (swapped(e) for e in engines.values())
    assert int(compiled.version.max()) == 1
    assert torch.equal(compiled.tokens, fused.tokens) and torch.equal(compiled.version, fused.version)
    torch.testing.assert_close(compiled.behav_logp, fused.behav_logp, atol=1e-5, rtol=0)
