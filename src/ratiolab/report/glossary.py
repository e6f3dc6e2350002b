"""What the report says about each plotted metric: its unit and what to look for, one table keyed by metric name.

Each :class:`Metric` row covers the ``metrics.jsonl`` keys of one quantity (``w_disc/mean`` and its
``/min``, ``/max``, ``/p99`` share one row) and gives the unit of the y axis, the "what to look for"
caption of the panel, the smallest y range the axis spans (so a ratio that sits at 1 within float
rounding is drawn as a flat line at 1, not as noise on a 1e-5 scale) and the config fields whose value
the caption quotes. ``docs/metrics.md`` is the full glossary; these rows say the same in the report's
words, and ``tests/report/test_glossary.py`` checks that every key here is documented there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One quantity: its ``keys``, y-axis ``unit``, caption ``look_for``, smallest y span ``min_span`` (0:
    none) and the dotted ``config`` fields quoted under the caption."""

    keys: tuple[str, ...]
    unit: str
    look_for: str
    min_span: float = 0.0
    config: tuple[str, ...] = ()


ROWS = (
    # language-model runs: learning
    Metric(("reward/mean",), "mean task reward per sample",
           "The training-prompt learning curve: it should rise. A rise here without one in held-out accuracy "
           "means the policy fits the training prompts only."),
    Metric(("gold_reward",), "mean verifier reward per sample",
           "With reward models the training reward is the RM's; this is the verifier's score of the same samples. "
           "Falling while the training reward rises is over-optimisation of the reward model."),
    Metric(("reward/gap",), "RM score minus verifier reward (RM units)",
           "RM scores have no fixed scale, so read the trend: a gap that keeps growing means the policy finds "
           "what the reward model over-rates."),
    Metric(("eval/accuracy", "eval/pass1"), "share of held-out problems solved",
           "The headline result, on problems never trained on. Greedy accuracy can jump in steps on a small "
           "eval set; pass@1 (sampled) moves more smoothly. A drop after a rise is a collapse.", 0.05),
    Metric(("approx_kl",), "nats (per token or action)",
           "How far one update moves the policy from the one that scored the batch (the trust region). "
           "Spikes come before instability; a value that creeps up step after step means the learning rate or "
           "the number of epochs is too large."),
    Metric(("kl_ref/k3", "kl/k3"), "nats per token",
           "Drift away from the reference policy. With a KL penalty it should level off near its target; "
           "unbounded growth means the penalty is too weak."),
    Metric(("kl/coef",), "coefficient (dimensionless)",
           "An adaptive controller raises it while the KL is above target and lowers it below; a coefficient "
           "pinned at its bound means the target cannot be met."),
    Metric(("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac"), "share clipped (tokens or samples)",
           "A rising clip fraction means each update pushes more tokens past the trust region: steps too large "
           "or data too stale. About 0.05 to 0.3 is usual for PPO; 0 means the clip never acts. Low and high "
           "show which side binds.", 0.05),
    Metric(("entropy",), "nats (per token or action)",
           "Exploration left in the policy. A steady slow decline is normal; a fall to near 0 early is entropy "
           "collapse (the policy stops trying alternatives)."),
    Metric(("response/length",), "tokens per response",
           "Answers growing to the token limit, or shrinking to nothing, are both failure modes; a verifiable "
           "task with short answers should stay flat.", 1.0, ("sampling.max_new_tokens",)),
    Metric(("r_stale/mean", "r_stale/min", "r_stale/max", "r_stale/p99"), "ratio π_θ / π_prox",
           "Policy movement since each token's version: the mean stays near 1 and the extremes widen as updates "
           "and staleness grow. A p99 far beyond 1 + ε means many tokens sit on the clip.", 0.02),
    Metric(("w_disc/mean", "w_disc/min", "w_disc/max", "w_disc/p99"), "ratio π_prox / μ",
           "The training-inference mismatch at one policy version. With an fp32 engine (the default) engine and "
           "learner compute the same probabilities up to float rounding, so w_disc stays within a few 1e-5 of 1 and a "
           "flat line at 1 is the expected picture. A bf16 engine, or top-k/top-p with full-vocabulary learner "
           "log-probs, moves min and max away from 1.", 0.02,
           ("sampling.engine_dtype", "sampling.top_k", "sampling.top_p", "sampling.logprob_support")),
    Metric(("loss",), "objective value (objective's own scale)",
           "Policy-gradient losses do not fall like a supervised loss: their sign and scale follow the "
           "advantages. Read the trend and the spikes, not the level."),
    Metric(("grad_norm",), "L2 norm before clipping",
           "Spikes mark unstable updates. A norm that always sits at the clip value means the clip, not the "
           "learning rate, sets the step size.", 0.0, ("algo.grad_clip",)),
    Metric(("time/generate", "time/score", "time/train", "time/wait", "time/eval"), "seconds per step",
           "Where a step's time goes. Generation usually dominates; in asynchronous runs a growing wait means the "
           "learner is starved by the actors."),
    Metric(("staleness/mean", "staleness/max"), "policy versions behind the learner",
           "How old the trained tokens are. The max must never exceed the configured bound; a mean near the "
           "bound means the actors run far ahead.", 1.0, ("async_rl.max_staleness",)),
    Metric(("partial/seq_frac",), "share of sequences",
           "Sequences whose tokens span several versions (a weight sync landed mid-generation). Non-zero only "
           "with partial rollouts.", 0.05),
    Metric(("staleness/frac_{k}",), "share of trained tokens",
           "The staleness histogram: mass at k = 0 is on-policy data. Mass piling up at the bound means the "
           "buffer is always full of old samples.", 0.05),
    Metric(("w_disc/abs_log_s{k}",), "mean |log w_disc| (nats)",
           "Flat in k under an exact old-logit strategy. Rising with k means the old logits were approximated, "
           "so staleness leaks into the mismatch weight.", 0.0, ("async_rl.old_logits",)),
    Metric(("kl_behav_prox/k1", "kl_behav_prox/k3"), "nats per token",
           "KL from the engine's sampling distribution to the learner's old policy: near 0 without a "
           "training-inference mismatch; the k1 estimate can dip below 0, k3 cannot.",
           0.0, ("sampling.engine_dtype",)),
    Metric(("old_logits/forwards",), "extra forward passes (cumulative)",
           "The compute the old-logit strategy spends scoring old versions; its slope is the cost per step."),
    Metric(("old_logits/weight_copies",), "weight copies held",
           "Memory held for old versions: an exact snapshot keeps at most max_staleness + 1 copies.", 1.0),
    Metric(("old_logits/stall_seconds",), "seconds (cumulative)",
           "Time rollouts were paused to score prefixes at each weight sync; a steep slope means syncs are "
           "expensive."),
    # classic-control (gym) runs
    Metric(("episodic_return", "eval/return_mean"), "return per episode (sum of rewards)",
           "Training episodes (with exploration noise) against deterministic evaluation episodes. The "
           "evaluation curve is the result; a gap between the two is the cost of exploring."),
    Metric(("loss/policy",), "objective value",
           "The surrogate loss hovers near 0 and does not fall steadily; trends and spikes matter, not the "
           "level."),
    Metric(("loss/value",), "squared error (return units²)",
           "Critic fit. It grows while returns grow, so read it with the explained variance, not alone."),
    Metric(("loss/q",), "squared TD error (return units²)",
           "TD loss of the Q network; a blow-up means the targets diverge (learning rate or λ too large)."),
    Metric(("loss/median",), "objective value",
           "The median head's loss; it should settle once the policy's returns stabilise."),
    Metric(("explained_variance",), "1 − Var(return − V) / Var(return)",
           "Critic quality: near 1 is a good critic, at or below 0 the critic predicts nothing and the "
           "advantages are pure noise.", 0.1),
)

#: Every plotted key (a per-staleness family as its ``{k}`` pattern) -> its row.
GLOSSARY: dict[str, Metric] = {key: row for row in ROWS for key in row.keys}


def metric(key: str) -> Metric:
    """The row of ``key``; an unknown key is an error naming where to add it."""
    try:
        return GLOSSARY[key]
    except KeyError:
        raise KeyError(f"metric {key!r} has no row in ratiolab.report.glossary.ROWS; add its unit and caption "
                       "there (and document it in docs/metrics.md)") from None


def _dotted(config: Mapping[str, Any], field: str) -> Any:
    node: Any = config
    for part in field.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def run_context(row: Metric, configs: Mapping[str, Mapping[str, Any]]) -> str:
    """The row's config fields as the runs (name -> config) set them: ``"This run: a = 1, b = x."`` for one
    run; for several, ``"These runs: a = 1, b = x (r1, r2), y (r3)."`` (a field's values grouped by run where
    they differ); "" when no run's config holds any of the fields."""
    parts = []
    for field in row.config:
        values: dict[str, list[str]] = {}
        for name, config in configs.items():
            if (v := _dotted(config, field)) is not None:
                values.setdefault(str(v), []).append(name)
        if len(values) == 1 or (values and len(configs) == 1):
            parts.append(f"{field} = {next(iter(values))}")
        elif values:
            parts.append(f"{field} = " + ", ".join(f"{v} ({', '.join(names)})" for v, names in values.items()))
    if not parts:
        return ""
    return ("This run: " if len(configs) == 1 else "These runs: ") + ", ".join(parts) + "."
