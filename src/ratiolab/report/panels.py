"""The panels of each kind of run, one quantity each; keys a run did not log are skipped, empty panels left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ratiolab.report.plots import Panel

Kind = Literal["lm", "gym"]

LM_PANELS = (
    Panel("Training reward", ("reward/mean",)),
    Panel("Held-out accuracy", ("eval/accuracy", "eval/pass1")),
    Panel("Trust-region KL per update", ("approx_kl",)),
    Panel("KL to the reference", ("kl_ref/k3", "kl/k3")),
    Panel("KL coefficient", ("kl/coef",)),
    Panel("Clip fractions", ("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac")),
    Panel("Policy entropy", ("entropy",)),
    Panel("Response length", ("response/length",)),
    Panel("Staleness ratio r_stale", ("r_stale/mean", "r_stale/min", "r_stale/max", "r_stale/p99")),
    Panel("Engine-learner mismatch w_disc", ("w_disc/mean", "w_disc/min", "w_disc/max", "w_disc/p99")),
    Panel("Loss", ("loss",)),
    Panel("Gradient norm", ("grad_norm",)),
    Panel("Time per step", ("time/generate", "time/score", "time/train", "time/wait", "time/eval")),
    Panel("Staleness of trained tokens", ("staleness/mean", "staleness/max")),
    Panel("Partial rollouts", ("partial/seq_frac",)),
    Panel("Tokens by staleness", ("staleness/frac_{k}",), by_staleness=True),
    Panel("|log w_disc| by staleness", ("w_disc/abs_log_s{k}",), by_staleness=True),
    Panel("KL(behaviour ‖ old policy)", ("kl_behav_prox/k1", "kl_behav_prox/k3")),
    Panel("Old-logit forwards", ("old_logits/forwards",)),
    Panel("Old-logit weight copies", ("old_logits/weight_copies",)),
    Panel("Old-logit stall time", ("old_logits/stall_seconds",)),
    Panel("Gold (verifier) reward of the samples", ("gold_reward",)),
    Panel("Reward model minus gold reward", ("reward/gap",)),
)

GYM_PANELS = (
    Panel("Episodic return", ("episodic_return", "eval/return_mean")),
    Panel("Policy loss", ("loss/policy",)),
    Panel("Value loss", ("loss/value",)),
    Panel("Q loss", ("loss/q",)),
    Panel("Median-head loss", ("loss/median",)),
    Panel("Explained variance", ("explained_variance",)),
    Panel("Clip fraction", ("clip_frac",)),
    Panel("Policy entropy", ("entropy",)),
    Panel("Approx. KL(old ‖ new)", ("approx_kl",)),
)

#: Per kind: the held-out metric a comparison ranks by, and its name in the summary table.
HEADLINE: dict[Kind, tuple[str, str]] = {"lm": ("eval/accuracy", "held-out accuracy (greedy)"),
                                         "gym": ("eval/return_mean", "deterministic eval return")}
#: Cumulative seconds a run logs, in order of preference: its wall time in a comparison.
WALL_KEYS = ("time/elapsed", "time/train_s")


def kind(config: Mapping[str, Any]) -> Kind:
    """``gym`` for a classic-control run (its config has ``env_id``), else ``lm``."""
    return "gym" if "env_id" in config else "lm"


def panels_for(config: Mapping[str, Any]) -> tuple[Panel, ...]:
    """The panels of the run whose config is ``config``."""
    return GYM_PANELS if kind(config) == "gym" else LM_PANELS
