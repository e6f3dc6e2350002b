#!/usr/bin/env bash
# STATUS: prepared, not run. The guess settings meet the issue's bar (PPO at staleness 0: +48 points of greedy
# held-out accuracy, 3 seeds); the arithmetic settings do NOT (no gain: it awaits a noisy-teacher base), and guess runs
# never reach max_staleness 8 (seen: 2-3). See docs/results/catalogue_pilot.md (regime search, pilots, time estimate).
# Regenerates the staleness catalogue in a learning regime (issue 13): every language-model objective x
# max_staleness {0, 2, 8} x old logits {snapshot (exact), recompute, behavior (behaviour-as-old)} x 5 seeds, on two
# tasks: single-turn arithmetic and the multi-turn guess task. Each task is one `ratiolab sweep`; each writes
# sweep.json, table.md (per-cell means with 95 % t-intervals), claims.md (paired tests, verdicts), the plots and
# report.html under $OUT/<task>. Merged cells: at staleness 0 snapshot and recompute are one run (behavior runs on
# its own: it differs by the engine's bf16 mismatch); ppo_ewma runs only with the ewma strategy it binds.
# ppo_ewma_original is left out: it has no default EWMA decay (it needs async_rl.ewma_beta, which would also change
# ppo_ewma). Two mini-batches per step, not one: with one mini-batch and one epoch, recompute gives r_stale = 1 exactly
# and every objective reduces to the same policy gradient (the pilot's recompute cells were identical across
# objectives). Usage: bash docs/results/catalogue.sh [OUT]   (PLAN_ONLY=1: print the plan and the time estimate only;
# TASKS, SEEDS, OBJECTIVES, WORKERS narrow the grid, e.g. the pilot: TASKS=arithmetic SEEDS=0,1 WORKERS=1
# OBJECTIVES=ppo,cispo,m2po,ppo_ewma)
set -euo pipefail
cd "$(dirname "$0")/../.."
RATIOLAB=${RATIOLAB:-.venv/bin/ratiolab}
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/catalogue}
WORKERS=${WORKERS:-2}
TASKS=${TASKS:-arithmetic guess}
SEEDS=${SEEDS:-0,1,2,3,4}
OBJECTIVES=${OBJECTIVES:-$($PY -c "from ratiolab.objectives import names; from ratiolab.objectives.grpo_guard import \
GAUSSIAN_ONLY; print(','.join(n for n in names() if n not in GAUSSIAN_ONLY and n != 'ppo_ewma_original'))")}
# CPU seconds per run (actor and learner threads together) and per pre-trained base, measured by the pilot
# (docs/results/catalogue_pilot.md) on a loaded 2-core machine; a quiet machine is faster.
ARITH_CPU=${ARITH_CPU:-2.75}
GUESS_CPU=${GUESS_CPU:-4.7}
PRETRAIN_CPU=${PRETRAIN_CPU:-6}

COMMON=(--objectives "$OBJECTIVES" --staleness 0,2,8 --old-logits snapshot,recompute,behavior --seeds "$SEEDS"
  --workers "$WORKERS"
  --set policy.preset=nano --set sampling.engine_dtype=bfloat16 --set algo.experimental=true
  --set algo.lr=3e-4 --set algo.warmup_steps=3 --set algo.minibatches=2 --set checkpoint_every=1000
  --set sampling.max_new_tokens=4)
# single turn: 1-digit + - * (300 problems; the 60 held-out ones are the whole test split, the same for every seed)
ARITH=(--metric pass1 --set task.name=arithmetic --set "task.params={level: 1}" --set policy.pretrain_steps=200
  --set algo.prompts_per_step=16 --set steps=20 --set eval_every=10 --set eval_size=60 --set eval_samples=8)
# multi-turn: guess 1-15 in 4 turns; held-out = fresh episodes (every secret in both splits); 60 % of the
# demonstrations are linear searches, so the base mixes a failing and a winning search from its first guess on and
# RL gains by preferring the binary search; greedy accuracy on 100 held-out episodes
GUESS=(--metric accuracy --set task.name=guess
  --set "task.params={max_value: 15, max_turns: 4, held_out: episodes, teacher_noise: 0.6}"
  --set policy.pretrain_steps=100 --set algo.prompts_per_step=8 --set steps=10 --set eval_every=5
  --set eval_size=100 --set eval_samples=0)

runs() { "$RATIOLAB" sweep "${COMMON[@]}" "$@" --plan | awk '{print $1; exit}'; }
NA=0; NG=0; NT=0
for t in $TASKS; do
  case $t in
    arithmetic) NA=$(runs "${ARITH[@]}" --out "$OUT/arithmetic") ;;
    guess) NG=$(runs "${GUESS[@]}" --out "$OUT/guess") ;;
    *) echo "unknown task $t (arithmetic, guess)" >&2; exit 2 ;;
  esac
  NT=$((NT + 1))
done
NSEEDS=$(echo "$SEEDS" | tr ',' '\n' | wc -l)
$PY -c "
na, ng, w, b = $NA, $NG, $WORKERS, $NT * $NSEEDS
cpu = na * $ARITH_CPU + ng * $GUESS_CPU + b * $PRETRAIN_CPU
print(f'{na} arithmetic + {ng} guess runs, {b} pre-trained bases: about {cpu / 60:.0f} CPU minutes, '
      f'estimated wall time {cpu / min(w, 2) / 60:.0f} min on {w} workers (2 cores)')"
[ -n "${PLAN_ONLY:-}" ] && exit 0
for t in $TASKS; do
  if [ "$t" = arithmetic ]; then "$RATIOLAB" sweep "${COMMON[@]}" "${ARITH[@]}" --out "$OUT/arithmetic"; fi
  if [ "$t" = guess ]; then "$RATIOLAB" sweep "${COMMON[@]}" "${GUESS[@]}" --out "$OUT/guess"; fi
done
