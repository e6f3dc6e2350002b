"""Classic-control benchmark: ratiolab vs Stable-Baselines3 on CartPole-v1, side by side in one process.

Rows (wall times exclude evaluation; evaluation = 20 deterministic episodes, env i seeded 10_000 + i):

1. ``vector``      sync vs async gymnasium vector env, random actions, 8 envs (steps/s).
2. ``ppo_steps``   SB3 PPO with its rl-baselines3-zoo CartPole-v1 hyperparameters vs ratiolab PPO with the
                   same hyperparameters: training wall time at an equal number of env steps; plus a
                   minimal plain-PyTorch PPO of the same work (``bare_ppo``), the floor eager per-step
                   compute sets. ratiolab runs its default path: the registry ``ppo`` objective on flat
                   parameters, eager. ``ratiolab_compile_s`` is the same run with ``ppo.compile`` (inductor,
                   the whole minibatch loss; its first iteration, ``compile_first_iter_s``, holds the compile
                   warm-up; inductor's on-disk cache makes later seeds warm).
3. ``ppo_target``  wall time until the evaluation first reaches 475 (SB3 zoo; ratiolab zoo settings; ratiolab
                   defaults = CleanRL parity).
4. ``pqn_target``  ratiolab PQN vs SB3 DQN (zoo hyperparameters) to the same evaluation return.
HalfCheetah-v5 (1M steps, PPO/MDPO/BPO against CleanRL) is ``benchmarks/bench_mujoco.py``.

Run: ``.venv/bin/python benchmarks/bench_gym.py [--seeds 3]``; needs the ``bench`` extra
(stable-baselines3). Prints a table and writes ``benchmarks/results/gym.json``.

Comparison mode, ``--compare OTHER_SRC [--repeats 3]``: ratiolab's own rows against another checkout's
``src`` (e.g. a ``git worktree`` of main), side by side. Each repeat runs every case once per tree, each
in a fresh subprocess with ``PYTHONPATH`` set to that tree's ``src`` (the order alternates between
repeats), and prints the median train seconds (wall, and the process CPU time of ``train``, which a
shared machine's load disturbs less; inductor compiles in-process for it) and ``this / other`` per case:
``ppo_zoo`` (the
``ppo_steps`` row, eager), ``ppo_zoo_compile`` (the same with ``ppo.compile``, a cold inductor cache
per run), ``ppo_defaults`` (CleanRL settings: 4 shuffled minibatches) and ``pqn_preset``, all at
``--steps`` env steps. The target rows reach the same return at the same step in both trees when the
updates are the same, so their time ratio is that of the equal-steps rows. SB3 is not needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ratiolab.gym import GymTrainConfig, preset, train
from ratiolab.gym.envs import make_vec

TARGET = 475.0
EVAL_EPISODES, EVAL_SEED = 20, 10_000

ZOO_PPO = {
    "n_envs": 8,
    "n_steps": 32,
    "batch_size": 256,
    "n_epochs": 20,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "lr": 1e-3,
    "clip": 0.2,
    "ent_coef": 0.0,
}
ZOO_DQN = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "net_arch": [256, 256],
}


def ratiolab_zoo_ppo(total: int, **kw: Any) -> GymTrainConfig:
    """The ``cartpole-ppo-zoo`` preset (the same hyperparameters as ``ZOO_PPO``) for ``total`` steps."""
    return dataclasses.replace(preset("cartpole-ppo-zoo"), total_steps=total, **kw)


def bench_vector(steps: int = 3000, n: int = 8) -> dict[str, float]:
    out = {}
    for mode in ("sync", "async"):
        envs = make_vec("CartPole-v1", n, mode)
        envs.reset(seed=0)
        acts = np.random.default_rng(0).integers(0, 2, (steps, n))
        t = time.perf_counter()
        for a in acts:
            envs.step(a)
        out[f"{mode}_steps_per_s"] = steps * n / (time.perf_counter() - t)
        envs.close()
    return out


def _sb3_eval(model: Any) -> float:
    envs = make_vec("CartPole-v1", EVAL_EPISODES, "sync")
    obs, _ = envs.reset(seed=[EVAL_SEED + i for i in range(EVAL_EPISODES)])
    ret, alive = np.zeros(EVAL_EPISODES), np.ones(EVAL_EPISODES, bool)
    while alive.any():
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, _ = envs.step(action)
        ret += r * alive
        alive &= ~(term | trunc)
    envs.close()
    return float(ret.mean())


def _sb3_to_target(model: Any, every: int, budget: int) -> dict[str, Any]:
    """One ``learn(budget)`` call (so SB3's schedules see the whole budget); a callback evaluates every
    ``every`` steps and stops at the target. Evaluation time is subtracted from the wall time."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Target(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval_s, self.next_eval, self.reached = 0.0, every, False

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += every
            t = time.perf_counter()
            self.reached = _sb3_eval(self.model) >= TARGET
            self.eval_s += time.perf_counter() - t
            return not self.reached

    cb = Target()
    t = time.perf_counter()
    model.learn(budget, callback=cb)
    seconds = time.perf_counter() - t - cb.eval_s
    return {"steps": int(model.num_timesteps), "seconds": seconds, "reached": cb.reached}


def sb3_ppo(seed: int) -> Any:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    z = ZOO_PPO
    env = make_vec_env("CartPole-v1", n_envs=z["n_envs"], seed=seed)
    return PPO(
        "MlpPolicy",
        env,
        n_steps=z["n_steps"],
        batch_size=z["batch_size"],
        n_epochs=z["n_epochs"],
        gamma=z["gamma"],
        gae_lambda=z["gae_lambda"],
        learning_rate=_linear(z["lr"]),
        clip_range=_linear(z["clip"]),
        ent_coef=z["ent_coef"],
        seed=seed,
        device="cpu",
        verbose=0,
    )


def sb3_dqn(seed: int) -> Any:
    from stable_baselines3 import DQN

    z = dict(ZOO_DQN)
    arch = z.pop("net_arch")
    return DQN(
        "MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": arch}, seed=seed, device="cpu", verbose=0, **z
    )


def _linear(v: float) -> Callable[[float], float]:
    return lambda progress_remaining: progress_remaining * v


def bare_ppo(seed: int, steps: int) -> float:
    """Wall seconds of a minimal PPO with the zoo hyperparameters in plain PyTorch: the same networks
    (tanh 64-64 actor and critic), vector env, GAE and 20 epochs of full-batch Adam, no diagnostics,
    checks or normalisation. The floor that per-step compute sets on this machine."""
    torch.manual_seed(seed)
    z = ZOO_PPO
    envs = make_vec("CartPole-v1", z["n_envs"])

    def net(out: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                                   torch.nn.Linear(64, out))

    actor, critic = net(2), net(1)
    params = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(params, lr=z["lr"], eps=1e-5)
    t0 = time.perf_counter()
    obs = torch.as_tensor(envs.reset(seed=seed)[0], dtype=torch.float32)
    updates = steps // (z["n_envs"] * z["n_steps"])
    for u in range(updates):
        frac = 1.0 - u / updates
        opt.param_groups[0]["lr"] = z["lr"] * frac
        buf_o, buf_a, buf_lp, buf_r, buf_d = [], [], [], [], []
        with torch.no_grad():
            for _ in range(z["n_steps"]):
                dist = torch.distributions.Categorical(logits=actor(obs))
                a = dist.sample()
                nxt, r, term, trunc, _ = envs.step(a.numpy())
                buf_o.append(obs), buf_a.append(a), buf_lp.append(dist.log_prob(a))
                buf_r.append(torch.as_tensor(r, dtype=torch.float32)), buf_d.append(torch.as_tensor(term | trunc))
                obs = torch.as_tensor(nxt, dtype=torch.float32)
            o, act, old_lp = torch.stack(buf_o), torch.stack(buf_a), torch.stack(buf_lp)
            v = critic(torch.cat([o.flatten(0, 1), obs])).view(-1, z["n_envs"])
            adv, last = torch.zeros(z["n_steps"], z["n_envs"]), torch.zeros(z["n_envs"])
            for t in reversed(range(z["n_steps"])):
                live = (~buf_d[t]).float()
                delta = buf_r[t] + z["gamma"] * v[t + 1] * live - v[t]
                last = delta + z["gamma"] * z["gae_lambda"] * live * last
                adv[t] = last
            ret = (adv + v[:-1]).flatten()
        o, act, old_lp, adv = o.flatten(0, 1), act.flatten(), old_lp.flatten(), adv.flatten()
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clip = z["clip"] * frac
        for _ in range(z["n_epochs"]):
            ratio = (torch.distributions.Categorical(logits=actor(o)).log_prob(act) - old_lp).exp()
            loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            loss = loss + 0.5 * (critic(o)[:, 0] - ret).square().mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.5)
            opt.step()
    envs.close()
    return time.perf_counter() - t0


def bench_ppo_steps(seed: int, steps: int) -> dict[str, float]:
    model = sb3_ppo(seed)
    t = time.perf_counter()
    model.learn(steps)
    sb3 = time.perf_counter() - t
    res = train(ratiolab_zoo_ppo(steps, seed=seed, eval_every=10**9), None)
    bare = bare_ppo(seed, steps)
    compiled = ratiolab_zoo_ppo(steps, seed=seed, eval_every=10**9)
    compiled.ppo.compile = True
    comp = train(compiled, None)
    return {"sb3_s": sb3, "ratiolab_s": res.train_seconds, "ratio": res.train_seconds / sb3,
            "bare_torch_s": bare, "bare_ratio": bare / sb3,
            "ratiolab_compile_s": comp.train_seconds, "compile_ratio": comp.train_seconds / sb3,
            "compile_first_iter_s": comp.rows[0]["time/train_s"], "eager_first_iter_s": res.rows[0]["time/train_s"]}


def bench_targets(seed: int, every_updates: int = 4) -> dict[str, Any]:
    budget_ppo, budget_dqn = 100_000, 100_000
    every = every_updates * ZOO_PPO["n_envs"] * ZOO_PPO["n_steps"]
    out: dict[str, Any] = {"sb3_ppo": _sb3_to_target(sb3_ppo(seed), every, budget_ppo)}
    targets = {
        "ratiolab_ppo_zoo": ratiolab_zoo_ppo(budget_ppo),
        "ratiolab_ppo_defaults": GymTrainConfig(total_steps=200_000),
        "ratiolab_pqn_preset": preset("cartpole-pqn"),
        "ratiolab_pqn_defaults": GymTrainConfig(algo="pqn", total_steps=200_000),
    }
    for name, base in targets.items():
        every = every_updates if "zoo" in name else 2
        cfg = dataclasses.replace(base, seed=seed, eval_every=every, target_return=TARGET)
        r = train(cfg, None)
        out[name] = {
            "steps": r.reached_target_step or r.steps,
            "seconds": r.reached_target_seconds or r.train_seconds,
            "reached": r.reached_target_step is not None,
        }
    out["sb3_dqn"] = _sb3_to_target(sb3_dqn(seed), 1024, budget_dqn)
    return out


#: The cases of ``--compare``: a config for ``steps`` env steps and ``seed``.
COMPARE_CASES: dict[str, Callable[[int, int], GymTrainConfig]] = {
    "ppo_zoo": lambda steps, seed: ratiolab_zoo_ppo(steps, seed=seed, eval_every=10**9),
    "ppo_zoo_compile": lambda steps, seed: dataclasses.replace(
        ratiolab_zoo_ppo(steps, seed=seed, eval_every=10**9),
        ppo=dataclasses.replace(preset("cartpole-ppo-zoo").ppo, compile=True)),
    "ppo_defaults": lambda steps, seed: GymTrainConfig(total_steps=steps, seed=seed, eval_every=10**9),
    "pqn_preset": lambda steps, seed: dataclasses.replace(preset("cartpole-pqn"), total_steps=steps, seed=seed,
                                                          eval_every=10**9),
}


def _child(case: str, steps: int, seed: int) -> None:
    """One ``--compare`` run in this process (the ratiolab on ``PYTHONPATH``): prints its train seconds (wall) and
    the process CPU seconds of ``train`` as JSON."""
    torch.set_num_threads(1)
    cpu = time.process_time()
    res = train(COMPARE_CASES[case](steps, seed), None)
    print(json.dumps({"train_s": res.train_seconds, "cpu_s": time.process_time() - cpu}))


def compare(other_src: Path, steps: int, repeats: int, seed: int = 1) -> dict[str, Any]:
    """Median train seconds per case of this tree and ``other_src``, alternating runs (module docstring)."""
    trees = {"this": Path(__file__).resolve().parents[1] / "src", "other": other_src.resolve()}
    times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in COMPARE_CASES}
    cpus: dict[str, dict[str, list[float]]] = {c: {t: [] for t in trees} for c in COMPARE_CASES}
    for rep in range(repeats):
        order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
        for case in COMPARE_CASES:
            for tree in order:
                with tempfile.TemporaryDirectory() as cache:
                    env = {**os.environ, "PYTHONPATH": str(trees[tree]), "OMP_NUM_THREADS": "1",
                           "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
                    out = subprocess.run([sys.executable, __file__, "--child", case, "--steps", str(steps),
                                          "--child-seed", str(seed)], env=env, check=True, capture_output=True,
                                         text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                times[case][tree].append(row["train_s"])
                cpus[case][tree].append(row["cpu_s"])
                print(f"  repeat {rep + 1} {case:<16} {tree:<5} {row['train_s']:.2f} s ({row['cpu_s']:.2f} s CPU)",
                      flush=True)
    med = statistics.median
    print(f"\n{'case':<18}{'other s':>9}{'this s':>9}{'this/other':>12}{'other CPU':>11}{'this CPU':>10}"
          f"{'this/other':>12}   (medians of {repeats}, {steps} steps)")
    rows = {}
    for case, t in times.items():
        c = cpus[case]
        rows[case] = {"other_s": t["other"], "this_s": t["this"], "ratio": med(t["this"]) / med(t["other"]),
                      "other_cpu_s": c["other"], "this_cpu_s": c["this"], "cpu_ratio": med(c["this"]) / med(c["other"])}
        print(f"{case:<18}{med(t['other']):>9.2f}{med(t['this']):>9.2f}{rows[case]['ratio']:>12.3f}"
              f"{med(c['other']):>11.2f}{med(c['this']):>10.2f}{rows[case]['cpu_ratio']:>12.3f}")
    return {"other_src": str(other_src), "steps": steps, "repeats": repeats, "cases": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20_480, help="env steps for the equal-steps PPO timing")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gym.json")
    ap.add_argument("--compare", type=Path, metavar="OTHER_SRC", help="time this tree against OTHER_SRC only")
    ap.add_argument("--repeats", type=int, default=3, help="runs per tree and case with --compare")
    ap.add_argument("--child", choices=sorted(COMPARE_CASES), help=argparse.SUPPRESS)
    ap.add_argument("--child-seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child, args.steps, args.child_seed)
        return
    if args.compare is not None:
        result = compare(args.compare, args.steps, args.repeats)
        out = args.out.with_name("gym_compare.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out}")
        return
    torch.set_num_threads(1)
    seeds = list(range(1, args.seeds + 1))
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "vector": bench_vector(),
    }
    result["ppo_steps"] = [bench_ppo_steps(s, args.steps) for s in seeds]
    result["targets"] = [bench_targets(s) for s in seeds]
    med = statistics.median
    v = result["vector"]
    print(
        f"vector env, 8 CartPole envs: sync {v['sync_steps_per_s']:.0f} steps/s, "
        f"async {v['async_steps_per_s']:.0f}"
    )
    ps = result["ppo_steps"]
    print(f"\nPPO zoo hyperparameters, {args.steps} steps (median of {len(seeds)} seeds)")
    print(
        f"  SB3 {med(r['sb3_s'] for r in ps):.2f} s   ratiolab {med(r['ratiolab_s'] for r in ps):.2f} s   "
        f"ratio {med(r['ratio'] for r in ps):.2f}x (target <= 0.5x)   bare-PyTorch floor "
        f"{med(r['bare_torch_s'] for r in ps):.2f} s = {med(r['bare_ratio'] for r in ps):.2f}x"
    )
    print(
        f"  ratiolab ppo.compile {med(r['ratiolab_compile_s'] for r in ps):.2f} s = "
        f"{med(r['compile_ratio'] for r in ps):.2f}x; first iteration (compile warm-up) "
        + ", ".join(f"{r['compile_first_iter_s']:.1f}" for r in ps)
        + " s vs eager " + ", ".join(f"{r['eager_first_iter_s']:.2f}" for r in ps) + " s"
    )
    for s, r in zip(seeds, ps, strict=True):
        print(f"  seed {s}: ratiolab/SB3 {r['ratio']:.2f}x, bare/SB3 {r['bare_ratio']:.2f}x, "
              f"compiled/SB3 {r['compile_ratio']:.2f}x (side by side in one process)")
    print(f"\nwall time (eval excluded) to deterministic 20-episode return >= {TARGET:.0f}")
    print(f"  {'method':<24}{'reached':>8}{'median steps':>14}{'median s':>10}")
    for name in result["targets"][0]:
        rows = [t[name] for t in result["targets"]]
        print(
            f"  {name:<24}{sum(r['reached'] for r in rows):>5}/{len(rows):<2}"
            f"{med(r['steps'] for r in rows):>14.0f}{med(r['seconds'] for r in rows):>10.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
