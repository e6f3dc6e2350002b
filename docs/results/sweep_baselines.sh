#!/usr/bin/env bash
# Regenerates docs/results/sweep_baselines.md: the baseline objectives at max_staleness {0, 2, 8}
# with exact old logits (snapshot) and the recompute fallback, on the demo's arithmetic set-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/ratiolab sweep --objectives ppo,grpo,cispo,gspo --staleness 0,2,8 --old-logits snapshot,recompute \
  --seeds 0 --workers 2 --out runs/sweep-baselines \
  --set "task.params={level: 2}" --set policy.pretrain_steps=600 --set algo.lr=1e-4 --set algo.warmup_steps=10 \
  --set steps=40 --set eval_every=10 --set sampling.engine_dtype=bfloat16
