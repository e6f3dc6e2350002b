"""Inference engines: ``HFEngine`` (HF transformers on CPU, the default) and multi-turn rollouts."""

from ratiolab.engines.hf_engine import Backend, HFEngine, Prompts, StepHook
from ratiolab.engines.multiturn import generate_turns
from ratiolab.engines.sampling import Rollout, SamplingParams, sampling_logprobs

__all__ = [
    "Backend", "HFEngine", "Prompts", "Rollout", "SamplingParams", "StepHook", "generate_turns",
    "sampling_logprobs",
]
