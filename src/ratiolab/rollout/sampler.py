"""One step's sampling, the same for the synchronous loop and every rollout actor: the engine a run's
config asks for, its sampling parameters, and ``sample problems -> collect`` under the step's seeds."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ratiolab import advantages, tasks
from ratiolab.config.train import PrefixConfig, TrainConfig
from ratiolab.engines import HFEngine, SamplingParams, StepHook
from ratiolab.rollout.experience import Experience, collect
from ratiolab.rollout.expert import demonstration_ids, prefix_length
from ratiolab.runs import step_seed


def make_engine(model: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: TrainConfig, version: int) -> HFEngine:
    """The run's inference engine over ``model`` (``sampling.engine_dtype``/``engine_compute``/``backend``)."""
    dtype = torch.bfloat16 if cfg.sampling.engine_dtype == "bfloat16" else torch.float32
    compute = torch.float32 if cfg.sampling.engine_compute == "float32" else None
    return HFEngine(model, tok, dtype=dtype, compute_dtype=compute, backend=cfg.sampling.backend, seed=cfg.seed,
                    version=version)


def sampling_params(cfg: TrainConfig) -> SamplingParams:
    """The training-time sampling parameters of ``cfg.sampling``."""
    sc = cfg.sampling
    return SamplingParams(temperature=sc.temperature, top_p=sc.top_p, top_k=sc.top_k, max_new_tokens=sc.max_new_tokens)


def sample_step(
    cfg: TrainConfig, engine: HFEngine, task: tasks.Task, sampling: SamplingParams, index: int, salt: str = "",
    on_step: StepHook | None = None, with_expert: bool = False,
) -> Experience:
    """``prompts_per_step`` training problems and ``samples_per_prompt`` responses each, seeded by
    ``(cfg.seed, index, salt)`` (``index``: the step, or the batch uid of an actor); greedy rewards as well
    when the advantage estimator declares them as an input (ReMax); the problems' demonstrations with
    ``with_expert``; off-policy prefixes per ``cfg.prefix``."""
    a = cfg.algo
    problems = task.sample(a.prompts_per_step, split="train", seed=step_seed(cfg.seed, index, "problems" + salt))
    with_greedy = "greedy_rewards" in advantages.ADVANTAGES.get(a.advantage).inputs
    prefixes = None
    if cfg.prefix.prob > 0:
        prefixes = draw_prefixes(engine, task, problems, cfg.prefix, step_seed(cfg.seed, index, "prefix" + salt))
    return collect(engine, task, problems, a.samples_per_prompt, sampling,
                   seed=step_seed(cfg.seed, index, "sample" + salt), with_greedy=with_greedy, on_step=on_step,
                   with_expert=with_expert, prefixes=prefixes)


def draw_prefixes(
    engine: HFEngine, task: tasks.Task, problems: list[tasks.Problem], prefix: PrefixConfig, seed: int,
) -> list[list[int]]:
    """Per problem, with probability ``prefix.prob`` (seeded), the first ``prefix_length`` tokens of its
    demonstration, else ``[]``."""
    drawn = torch.rand(len(problems), generator=torch.Generator().manual_seed(seed)) < prefix.prob
    demos = demonstration_ids(engine.tokenizer, task, problems)
    return [ids[:prefix_length(len(ids), prefix.fraction)] if take else []
            for ids, take in zip(demos, drawn.tolist(), strict=True)]
