"""The ``ratiolab`` command line: list, config, pretrain, train, eval, export, report, demo, data, offline."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ratiolab.config import ConfigError, load_yaml, override, parse_yaml
from ratiolab.registry import Registry


def _width(stream: Any) -> int | None:
    """The console width for ``stream`` (set by :func:`main`): the terminal's (``None``: rich measures it), else
    ``$COLUMNS`` or 1000, so that tables written to a file or a pipe keep their rows on one line instead of
    folding at rich's default 80 columns."""
    if stream.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else 1000


console = Console()
LOG_HELP = ("experiment trackers that also get every logged row, comma-separated: tensorboard, wandb (offline), "
            "mlflow (local); needs pip install 'ratiolab[trackers]'")
errors = Console(stderr=True, soft_wrap=True, highlight=False)


def _fmt(v: Any) -> str:
    return "required" if v is inspect.Parameter.empty else repr(v)


def registry_table(reg: Registry, title: str, hide: Sequence[str] = ()) -> Table:
    """A rich table of a registry: name, arXiv id, summary, parameters that differ from ``hide``."""
    table = Table(title=title, show_lines=False)
    for col in ("name", "arXiv", "summary", "parameters"):
        table.add_column(col, overflow="fold")
    for e in reg:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in e.params.items() if k not in hide or k in e.fixed)
        summary = ("(experimental) " if e.experimental else "") + e.summary
        table.add_row(e.name, e.arxiv or "—", Text(summary), Text(params))  # Text: "[inferred]" is no markup
    return table


def old_logits_table() -> Table:
    """The old-logit strategies (``async_rl.old_logits``): name, exact or not, first docstring line."""
    from ratiolab.correction import old_logits

    table = Table(title="old-logit strategies (async_rl.old_logits)")
    for col in ("name", "exact", "summary"):
        table.add_column(col, overflow="fold")
    classes = {c.NAME: c for c in _subclasses(old_logits.OldLogitStrategy) if c.NAME}
    for name in old_logits.STRATEGIES:
        cls = classes[name]
        table.add_row(name, "yes" if cls.EXACT else "no", (inspect.getdoc(cls) or "").splitlines()[0])
    return table


def _subclasses(cls: Any) -> list[Any]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def _cmd_list(args: argparse.Namespace) -> int:
    from ratiolab.advantages import ADVANTAGES
    from ratiolab.correction import CORRECTIONS
    from ratiolab.objectives import COMMON, OBJECTIVES
    from ratiolab.preference import PREFERENCE_LOSSES

    if args.what == "objectives":
        console.print(registry_table(OBJECTIVES, "objectives", hide=tuple(COMMON)))
        console.print("every objective also takes: " + ", ".join(f"{k}={v!r}" for k, v in COMMON.items()))
    elif args.what == "preference":
        console.print(registry_table(PREFERENCE_LOSSES, "preference losses (ratiolab.preference, pairs of responses)"))
    elif args.what == "advantages":
        console.print(registry_table(ADVANTAGES, "advantage estimators"))
    elif args.what == "corrections":
        console.print(registry_table(CORRECTIONS, "discrepancy corrections"))
    elif args.what == "old-logits":
        console.print(old_logits_table())
    else:
        from ratiolab import tasks

        table = Table(title="tasks (task.name; task.params override the defaults)")
        for col in ("name", "default parameters"):
            table.add_column(col, overflow="fold")
        for name in tasks.names():
            params = inspect.signature(tasks.REGISTRY[name].__init__).parameters.values()
            table.add_row(name, ", ".join(f"{p.name}={_fmt(p.default)}" for p in params if p.name != "self"))
        console.print(table)
    return 0


def _stored_config(cls: type, args: argparse.Namespace) -> Any:
    """``--resume DIR``: the config stored in ``DIR/config.yaml``, which the other flags then override."""
    from ratiolab.config import from_dict
    from ratiolab.runs import RunDir

    for flag in ("config", "preset"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag} with --resume: a resumed run keeps the config in {args.resume}/config.yaml; "
                              f"drop --{flag} (use --steps to extend the run)")
    stored = _run_config(args.resume)
    stored.pop("policy_source", None)
    try:
        return from_dict(cls, stored)
    except ConfigError as err:
        raise ConfigError(f"{Path(args.resume) / RunDir.CONFIG}: {err}") from err


def _run_config(path: str) -> dict[str, Any]:
    """The stored config of the run in ``path`` (``--resume``), refusing a file that is not a YAML mapping."""
    from ratiolab.runs import RunDir

    file = Path(path) / RunDir.CONFIG
    RunDir.open(path)
    data = parse_yaml(file.read_text(), str(file))
    if not isinstance(data, dict):
        raise ConfigError(f"{file} holds a {type(data).__name__}, not a run config; pass the folder of a ratiolab run")
    return data


def _train_config(args: argparse.Namespace) -> Any:
    from ratiolab.learner import TrainConfig

    if getattr(args, "resume", None):
        cfg = _stored_config(TrainConfig, args)
    else:
        cfg = load_yaml(TrainConfig, args.config) if args.config else TrainConfig()
        if getattr(args, "preset", None):  # a language-model preset: its assignments onto the config
            from ratiolab.config.presets import preset

            cfg = preset(args.preset, cfg)
    task = getattr(args, "task", None)
    # another task starts from its own defaults: the config's task.params belong to its task
    sets = [f"task.name={json.dumps(task)}", "task.params={}"] if task not in (None, cfg.task.name) else []
    sets += list(args.set or [])
    for flag, key in (("objective", "algo.objective"), ("model", "policy.model"),
                      ("steps", "steps"), ("run_dir", "run_dir"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")  # a JSON string is a YAML string: paths keep ':' and '#'
    if getattr(args, "resume", None):
        sets.append(f"run_dir={json.dumps(args.resume)}")
    if getattr(args, "reward", None) is not None:
        sets.append(f"reward.models={json.dumps(_reward_models(args.reward))}")
    if getattr(args, "async_rl", False):
        sets.append("async_rl.enabled=true")
    if getattr(args, "backend", None):
        sets += ["async_rl.enabled=true", f"async_rl.backend={args.backend}"]
    if getattr(args, "address", None):
        sets.append(f"async_rl.ray_address={args.address}")
    return override(cfg, [*sets, *_log_set(args)])


def _reward_models(spec: str) -> list[str]:
    """``--reward verifier`` (no reward models) or ``--reward model:DIR[,DIR...]`` as the list of folders."""
    if spec == "verifier":
        return []
    kind, sep, folders = spec.partition(":")
    names = [f.strip() for f in folders.split(",") if f.strip()]
    if kind != "model" or not sep or not names:
        raise ConfigError(f"--reward {spec!r}: use verifier, or model:DIR (model:DIR1,DIR2 for an ensemble)")
    return names


def _cmd_rm(args: argparse.Namespace) -> int:
    from ratiolab.reward_model import RMTrainConfig, generate_pairs, train_reward_model, write_pairs

    task = _task(args)
    params = _task_config(args).params
    if args.rm_command == "pairs":
        pairs = generate_pairs(task, args.n, split=args.split, seed=args.seed, label_noise=args.label_noise)
        console.print(f"wrote {len(pairs)} pairs to {write_pairs(args.out, pairs)}")
        return 0
    cfg = RMTrainConfig(
        task=args.task, task_params=params, pairs=args.pairs, n_pairs=args.n_pairs, eval_pairs=args.eval_pairs,
        label_noise=args.label_noise, init=args.init, preset=args.preset, loss=args.loss,
        crm_variant=args.crm_variant, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        ensemble=args.ensemble,
    )
    for result in train_reward_model(cfg, args.out):
        console.print(f"saved reward model to {result.out_dir}: loss {result.first_loss:.3f} -> "
                      f"{result.final_loss:.3f}, held-out pair accuracy {result.eval_accuracy:.1%} "
                      f"({result.seconds:.1f} s)")
    return 0


def _log_set(args: argparse.Namespace) -> list[str]:
    """``--log tensorboard,mlflow`` as the assignment ``log=[...]`` (none without the flag)."""
    if getattr(args, "log", None) is None:
        return []
    return [f"log={json.dumps([n.strip() for n in args.log.split(',') if n.strip()])}"]


def _progress(total: int, start: int = 0) -> Progress:
    return Progress(
        TextColumn("[bold]RL[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("reward {task.fields[reward]:.3f}  held-out acc {task.fields[accuracy]:.1%}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


@contextlib.contextmanager
def pretrain_progress(total: int) -> Iterator[Callable[[int, float], None]]:
    """A ``(step, loss)`` callback for pre-training, shown on stderr: a rich progress bar on a terminal, else
    five lines (the first step, each quarter)."""
    if errors.is_terminal:
        with Progress(TextColumn("[bold]pre-training[/bold]"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=errors, transient=True) as bar:
            task_id = bar.add_task("pretrain", total=total, loss=float("nan"))
            yield lambda step, loss: bar.update(task_id, completed=step, loss=loss)
        return
    start, marks = time.perf_counter(), {1, *(total * q // 4 for q in range(1, 5))}

    def line(step: int, loss: float) -> None:
        if step in marks:
            errors.print(f"pre-training: step {step}/{total}, loss {loss:.3f}, {time.perf_counter() - start:.0f} s")

    yield line


def run_training(cfg: Any, resume: bool) -> Any:
    from ratiolab.learner import train
    from ratiolab.policies.source import policy_source

    cfg.validate()  # a bad config fails before any pre-training
    with pretrain_progress(cfg.policy.pretrain_steps) as step:  # the cached base, pre-trained here on first use
        policy_source(cfg, console.print, progress=step)
    with _progress(cfg.steps) as bar:
        task_id = bar.add_task("train", total=cfg.steps, reward=0.0, accuracy=0.0)

        def update(step: int, m: dict[str, float]) -> None:
            bar.update(task_id, completed=step, reward=m["reward"], accuracy=m["accuracy"])

        return train(cfg, resume=resume, progress=update, log=console.print)


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        gym_run = "env_id" in _run_config(args.resume)
        if args.env is not None and not gym_run:
            raise ConfigError(f"--env: {args.resume} holds a language-model run; drop --env to resume it")
        if gym_run:
            return _cmd_train_gym(args)
    elif args.env is not None:
        return _cmd_train_gym(args)
    cfg = _train_config(args)
    result = run_training(cfg, resume=args.resume is not None)
    console.print(f"held-out accuracy: base {result.base_accuracy:.1%} -> trained {result.final_accuracy:.1%}")
    console.print(f"report: {result.report}")
    return 0


def _cmd_train_gym(args: argparse.Namespace) -> int:
    from ratiolab import gym
    from ratiolab.runs import default_run_dir

    if args.resume is not None:
        cfg = _stored_config(gym.GymTrainConfig, args)
    else:
        if args.preset is not None and args.preset not in gym.PRESETS:
            raise ConfigError(f"--preset {args.preset!r} is not a gym preset; valid presets: {sorted(gym.PRESETS)}")
        cfg = gym.preset(args.preset) if args.preset else gym.GymTrainConfig()
        if args.config:
            cfg = load_yaml(gym.GymTrainConfig, args.config)
    algo = args.algo or (None if args.resume is not None else "ppo")
    sets = [*([f"env_id={json.dumps(args.env)}"] if args.env else []), *([f"algo={json.dumps(algo)}"] if algo else []),
            *(args.set or [])]
    if args.objective is not None:  # the config rejects it for algorithms with their own loss
        sets.append(f"ppo.objective={json.dumps(args.objective)}")
    if args.steps is not None:
        sets.append(f"total_steps={args.steps}")
    if args.seed is not None:
        sets.append(f"seed={args.seed}")
    try:
        cfg = override(cfg, [*sets, *_log_set(args)])
    except ValueError as err:
        raise ConfigError(str(err)) from err
    run_dir = Path(args.resume or args.run_dir or default_run_dir(cfg.env_id, cfg.algo))
    with Progress(TextColumn(f"[bold]{cfg.algo}[/bold] {cfg.env_id}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("return {task.fields[ret]:.1f}"), TimeElapsedColumn(), console=console) as bar:
        task_id = bar.add_task("train", total=cfg.total_steps, ret=0.0)

        def update(row: dict[str, Any]) -> None:
            ret = row.get("eval/return_mean", row.get("episodic_return"))
            bar.update(task_id, completed=row.get("step", 0), **({"ret": ret} if ret is not None else {}))

        try:
            result = gym.train(cfg, run_dir, resume=args.resume is not None, progress=update)
        except gym.EnvError as err:
            raise ConfigError(str(err)) from err
    final = result.final_eval
    if final is not None:
        console.print(f"{cfg.algo} on {cfg.env_id}: deterministic return {final.mean:.1f} ± {final.std:.1f} "
                      f"over {len(final.returns)} episodes after {result.steps} steps ({result.train_seconds:.1f} s)")
    console.print(f"report: {run_dir / 'report.html'}")
    return 0


def _task(args: argparse.Namespace) -> Any:
    """The task of ``--task`` / ``--level`` / ``--set task.params...``; a bad name or parameter is a one-line error."""
    from ratiolab import tasks

    cfg = _task_config(args)
    try:
        return tasks.get(cfg.name, **cfg.params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--task {args.task!r} / task.params {cfg.params}: {err}") from err


def _task_config(args: argparse.Namespace) -> Any:
    """The ``TaskConfig`` of ``--task`` / ``--level`` / ``--set task.params...`` (other ``--set`` keys refused)."""
    from ratiolab.config.train import TaskConfig

    bad = [s for s in args.set or [] if not s.startswith("task.params")]
    if bad:
        raise ConfigError(f"--set {bad[0]!r}: {args.command} takes task parameters only, e.g. "
                          "--set task.params.level=3 or --set task.params={path: data.jsonl}")
    base = TaskConfig(name=args.task, params={"level": args.level} if args.level is not None else {})
    return override(base, [s.removeprefix("task.") for s in args.set or []])


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ratiolab.policies.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(task=args.task, preset=args.preset, steps=args.steps, lr=args.lr, seed=args.seed,
                         model=args.model, stop_pass1=args.stop_pass1)
    cfg.validate()
    task = _task(args)
    start = args.preset if args.model is None else Path(args.model).name
    out = Path(args.out or f".cache/ratiolab/pretrained/{args.task}-{start}-cli")
    with pretrain_progress(cfg.steps) as step:
        result = pretrain(task, out, cfg, progress=step)
    what = f"{args.preset} policy" if args.model is None else f"policy (from {args.model})"
    stop = "" if result.check_pass1 is None else f", stopped at train-split pass@1 {result.check_pass1:.1%}"
    console.print(f"saved {result.n_params:,}-parameter {what} to {result.out_dir} "
                  f"in {result.seconds:.1f} s, {result.steps} steps (final loss {result.final_loss:.3f}{stop})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ratiolab.config.train import SamplingConfig
    from ratiolab.policies import check_context, load_policy
    from ratiolab.policies.evaluate import accuracy
    from ratiolab.tasks import completion_tokens

    for flag, value in (("--n", args.n), ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be a positive integer")
    task = _task(args)
    model, tok = load_policy(args.model)
    problems = task.sample(args.n, split="test", seed=args.seed)
    budget = args.max_new_tokens or max(SamplingConfig().max_new_tokens, completion_tokens(task, problems, tok))
    check_context(model, tok, [p.prompt for p in problems], budget, f"--task {args.task}")
    acc = accuracy(model, tok, task, problems, greedy=True, max_new_tokens=budget)
    console.print(f"held-out accuracy of {args.model} on {args.task}: {acc:.1%} ({args.n} problems, "
                  f"max_new_tokens {budget})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ratiolab.runs import RunDir

    ckpt, out = RunDir.open(args.run).export(args.out)
    console.print(f"exported step {ckpt.step} of {args.run} to {out} (AutoModelForCausalLM.from_pretrained loads it; "
                  f"ratiolab eval --model {out})")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from ratiolab.config import to_dict

    if not args.show:
        raise ConfigError("config: pass --show to print the config (YAML that --config FILE accepts)")
    console.print(yaml.safe_dump(to_dict(_train_config(args)), sort_keys=False), end="", markup=False,
                  highlight=False, soft_wrap=True)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ratiolab.report import panels_for, rewrite_report
    from ratiolab.runs import RunDir

    run = RunDir.open(args.run)
    try:
        out = rewrite_report(run, panels_for(run.config()), title=f"ratiolab run {run.path.name}")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    console.print(f"report: {out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from ratiolab.report import compare_runs
    from ratiolab.runs import default_run_dir

    try:
        res = compare_runs(args.runs, args.out or default_run_dir("compare"))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    console.print(res.markdown, end="", markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {res.report}")
    return 0


def _csv(kind: type, text: str, flag: str) -> tuple[Any, ...]:
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise ConfigError(f"{flag} {text!r}: give comma-separated {kind.__name__} values, e.g. 0,2,8") from err


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ratiolab.eval import SweepConfig, run_sweep

    sweep = SweepConfig(
        base=_train_config(args), objectives=_csv(str, args.objectives, "--objectives"),
        max_staleness=_csv(int, args.staleness, "--staleness"), old_logits=_csv(str, args.old_logits, "--old-logits"),
        seeds=_csv(int, args.seeds, "--seeds"), workers=args.workers, out_dir=args.out, metric=args.metric,
        min_effect=args.min_effect,
    )
    if args.plan:
        sweep.validate()
        console.print(f"{len(sweep.cells())} runs ({len(sweep.merged())} grid cells merged into them), "
                      f"{len(sweep.seeds)} pre-trained bases")
        return 0
    out = run_sweep(sweep, progress=console.print)
    console.print((out / "table.md").read_text())
    console.print(f"sweep report: {out / 'report.html'}")
    return 0


def _cmd_ope(args: argparse.Namespace) -> int:
    from ratiolab.eval.ope_checkpoints import rank_checkpoints

    try:
        ranking = rank_checkpoints(args.run, estimator=args.estimator, episodes=args.episodes, k=args.k,
                                   behavior_step=args.behavior_step, epsilon=args.epsilon, seed=args.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    console.print(ranking.to_table(), markup=False, highlight=False)
    console.print(f"written: {Path(args.run) / 'ope.json'}")
    return 0


def _cmd_data_collect(args: argparse.Namespace) -> int:
    from ratiolab.offline.collect import CollectConfig, collect
    from ratiolab.offline.dataset import DatasetError, read_dataset

    cfg = CollectConfig(env_id=args.env, policy=args.policy, steps=args.steps, seed=args.seed, source=args.source or "",
                        train_steps=args.train_steps, noise=args.noise, epsilon=args.epsilon)
    try:
        out = collect(cfg, args.out, overwrite=args.force, log=console.print)
        data = read_dataset(out)
    except DatasetError as err:
        raise ConfigError(str(err)) from err
    rets = data.episode_returns()
    console.print(f"wrote {len(data)} transitions ({len(rets)} complete episodes, mean return {rets.mean():.1f}) "
                  f"to {out}; reference returns {data.meta.ref_returns}")
    return 0


def _cmd_offline_train(args: argparse.Namespace) -> int:
    from ratiolab.offline.dataset import DatasetError
    from ratiolab.offline.learners import LearnerConfig
    from ratiolab.offline.train import OfflineTrainConfig, train

    learner = LearnerConfig() if args.hidden is None else LearnerConfig(hidden=[int(h) for h in args.hidden.split(",")])
    cfg = OfflineTrainConfig(algo=args.algo, data=args.data, steps=args.steps, batch_size=args.batch_size,
                             seed=args.seed, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                             learner=learner)
    run_dir = args.run_dir or f"runs/offline-{args.algo}-{time.strftime('%Y%m%d-%H%M%S')}"

    def show(row: dict[str, Any]) -> None:
        score = row.get("eval/normalised_score")
        console.print(f"step {row['step']}: eval return {row['eval/return_mean']:.1f}"
                      + ("" if score is None else f", normalised score {score:.1f}"))

    try:
        train(cfg, run_dir, log=show)
    except DatasetError as err:
        raise ConfigError(str(err)) from err
    console.print(f"run directory: {run_dir}")
    return 0


def _cmd_showcase(args: argparse.Namespace) -> int:
    from ratiolab.showcase import run

    run(console)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ratiolab.learner.demo import run_demo

    return run_demo(console, run_training, fresh=args.fresh)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` lists each option's default, except the unset ones (``None``, ``False``: the config decides)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False):
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    from ratiolab.config.train import TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="ratiolab", description=__doc__, formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help)

    p = add("list", help="print a registry as a table")
    p.add_argument("what", choices=["objectives", "preference", "advantages", "corrections", "old-logits", "tasks"])
    p.set_defaults(fn=_cmd_list)

    p = add("train", help="RL-train a policy (language model, or a gym env with --env)")
    _config_flags(p)
    p.add_argument("--objective", help=f"registered objective (ratiolab list objectives; default {d.algo.objective})")
    p.add_argument("--task", help=f"registered task (ratiolab list tasks; default {d.task.name}); another task than "
                   "the config's starts from its own default task.params")
    p.add_argument("--model", help="local Hugging Face checkpoint folder to start from (default: pre-train a "
                   f"{d.policy.preset} policy on the task, cached)")
    p.add_argument("--steps", type=int, help=f"RL steps (default {d.steps})")
    p.add_argument("--seed", type=int, help=f"seed of the run and its pre-training (default {d.seed})")
    p.add_argument("--run-dir", dest="run_dir", help="run directory (default: a new runs/<objective>-<task>-<time>, "
                   "runs/<env>-<algo>-<time> with --env)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint with "
                   "its stored config (--steps may extend it; other changes are refused)")
    p.add_argument("--async", dest="async_rl", action="store_true", help="asynchronous actor/learner training")
    p.add_argument("--backend", choices=["local", "threads", "process", "ray"],
                   help="async backend (implies --async): local = threads; process for multi-turn tasks")
    p.add_argument("--address", help="Ray cluster address (with --backend ray), e.g. 192.168.0.2:6379")
    p.add_argument("--env", help="gymnasium environment id: train the classic-control track")
    p.add_argument("--algo", help="classic-control algorithm (with --env; default ppo): ppo, mdpo, bpo, props, "
                   "pdppo, pqn, mdpo_off")
    p.add_argument("--preset", help="a recipe: the language-model ppo-max (PPO-max, arXiv 2307.04964), or a "
                   "classic-control preset with --env, e.g. cartpole-ppo-zoo, cartpole-pqn")
    p.add_argument("--log", help=LOG_HELP)
    p.add_argument("--reward", help="where rewards come from: verifier (the task's, default) or model:DIR (a reward "
                   "model from ratiolab rm train; model:DIR1,DIR2 for an ensemble, see reward.ensemble); the verifier "
                   "stays the gold score")
    p.set_defaults(fn=_cmd_train)

    p = add("rm", help="reward models: preference pairs from a task, Bradley-Terry / PPO-M training")
    rm_sub = p.add_subparsers(dest="rm_command", required=True)
    for name, text in (("train", "train a reward model (or --ensemble K) on preference pairs; save_pretrained"),
                       ("pairs", "write preference pairs of a task to a .jsonl or .parquet file")):
        q = rm_sub.add_parser(name, help=text, description=text, formatter_class=_Help)
        q.add_argument("--task", default="arithmetic", help="registered single-turn task (ratiolab list tasks)")
        q.add_argument("--level", type=int, help="arithmetic level (short for --set task.params.level=N)")
        _task_flags(q)
        q.add_argument("--label-noise", dest="label_noise", type=float, default=0.0,
                       help="probability that a generated pair's labels are swapped")
        q.add_argument("--seed", type=int, default=0, help="seed of the pairs (and of the first member)")
        q.add_argument("--out", required=True, help="output folder (train) or pair file (pairs)")
        q.set_defaults(fn=_cmd_rm)
    d_rm = _rm_defaults()
    q.add_argument("--n", type=int, default=1000, help="pairs to write")
    q.add_argument("--split", default="train", choices=["train", "test"], help="task split of the prompts")
    t = rm_sub.choices["train"]
    t.add_argument("--pairs", help="a pair file (.jsonl/.parquet: prompt, chosen, rejected) instead of generated pairs")
    t.add_argument("--n-pairs", dest="n_pairs", type=int, default=d_rm.n_pairs, help="generated training pairs")
    t.add_argument("--eval-pairs", dest="eval_pairs", type=int, default=d_rm.eval_pairs,
                   help="held-out pairs (test split, no label noise)")
    t.add_argument("--init", help="policy folder whose trunk the RM starts from, or an RM folder (PPO-M's base RM); "
                   "default: a fresh --preset trunk")
    t.add_argument("--preset", default=d_rm.preset, help="trunk size preset without --init")
    t.add_argument("--loss", default=d_rm.loss, choices=["bt", "crm"], help="bt: Bradley-Terry; crm: PPO-M's "
                   "calibrated loss")
    t.add_argument("--crm-variant", dest="crm_variant", default=d_rm.crm_variant,
                   help="crm, combined, variant_1 or kwise (with --loss crm)")
    t.add_argument("--steps", type=int, default=d_rm.steps, help="optimiser steps per member")
    t.add_argument("--batch-size", dest="batch_size", type=int, default=d_rm.batch_size, help="pairs per step")
    t.add_argument("--lr", type=float, default=d_rm.lr, help="learning rate")
    t.add_argument("--ensemble", type=int, default=1, help="train K members (seeds seed..seed+K-1) into OUT/member-k")

    p = add("sweep", help="objective x max_staleness x old_logits x seeds: the staleness lab")
    _config_flags(p)
    p.add_argument("--objectives", default="ppo", help="comma-separated objectives")
    p.add_argument("--staleness", default="0,2,8", help="comma-separated max_staleness values")
    p.add_argument("--old-logits", dest="old_logits", default="snapshot,recompute", help="comma-separated strategies")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--workers", type=int, default=1, help="cells run in parallel processes")
    p.add_argument("--out", default="runs/sweep", help="output folder")
    p.add_argument("--log", help=LOG_HELP)
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "pass1"],
                   help="what the table and claims compare: greedy accuracy, or pass@1 (needs eval_samples)")
    p.add_argument("--min-effect", dest="min_effect", type=float, default=0.02,
                   help="smallest effect of practical size: a claimed gain whose 95%% interval lies below it "
                   "did not hold")
    p.add_argument("--plan", action="store_true", help="validate the grid and print its number of runs; run nothing")
    p.set_defaults(fn=_cmd_sweep)

    p = add("pretrain", help="supervised pre-training on task demonstrations")
    p.add_argument("--task", default="arithmetic", help="registered task (ratiolab list tasks)")
    p.add_argument("--level", type=int, help="arithmetic level (short for --set task.params.level=N)")
    _task_flags(p)
    p.add_argument("--preset", default="tiny", help="model size preset of a fresh policy")
    p.add_argument("--model", help="local Hugging Face causal-LM folder (save_pretrained: model and tokenizer) to "
                   "pre-train from instead of a fresh --preset policy")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="initialisation and problem seed")
    p.add_argument("--stop-pass1", dest="stop_pass1", type=float, default=None,
                   help="stop at the first check (every 10 steps, 128 train-split problems) whose pass@1 reaches this")
    p.add_argument("--out", help="output folder (save_pretrained)")
    p.set_defaults(fn=_cmd_pretrain)

    p = add("eval", help="held-out greedy accuracy of a checkpoint")
    p.add_argument("--model", required=True, help="Hugging Face folder: a run's checkpoint, ratiolab export output")
    p.add_argument("--task", default="arithmetic", help="registered task (ratiolab list tasks)")
    p.add_argument("--level", type=int, help="arithmetic level (short for --set task.params.level=N)")
    _task_flags(p)
    p.add_argument("--n", type=int, default=200, help="test problems")
    p.add_argument("--seed", type=int, default=0, help="seed of the test sample")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int,
                   help="tokens per answer (default: sampling.max_new_tokens's default, or the longest demonstration "
                   "of the problems plus EOS where that is longer)")
    p.set_defaults(fn=_cmd_eval)

    p = add("report", help="(re)write report.html of a run directory")
    p.add_argument("run")
    p.set_defaults(fn=_cmd_report)

    p = add("compare", help="overlay several runs of one kind per panel, with a summary table")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument("--out", help="output folder (default: a new runs/compare-<time>)")
    p.set_defaults(fn=_cmd_compare)

    p = add("export", help="the latest intact checkpoint of a language-model run as a plain Hugging Face folder")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", help="output folder, new or empty (default RUN/export)")
    p.set_defaults(fn=_cmd_export)

    p = add("config", help="print the full training config as YAML (what --config FILE accepts)")
    p.add_argument("--show", action="store_true", help="print the config: the defaults, or --config/--preset/--set "
                   "applied")
    p.add_argument("--preset", help="a language-model preset applied before --set, e.g. ppo-max")
    _config_flags(p)
    p.set_defaults(fn=_cmd_config)

    p = add("ope", help="rank a gym run's checkpoints from logged data (SharpeRatio@k, OPE gate)")
    p.add_argument("run", help="run directory trained with --set checkpoint_every=N --set keep_checkpoints=M")
    p.add_argument("--estimator", default="pdis", help="pdis, snpdis, tis or sntis")
    p.add_argument("--episodes", type=int, default=100, help="logged episodes (and on-policy episodes per candidate)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--behavior-step", dest="behavior_step", type=int, help="behaviour checkpoint (default: latest)")
    p.add_argument("--epsilon", type=float, default=0.1, help="uniform mixed into the behaviour policy")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_cmd_ope)

    p = add("data", help="offline RL datasets: `ratiolab data collect ...`")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("collect", help="write a D4RL-style transition dataset from ratiolab's gym policies",
                            formatter_class=_Help)
    p.add_argument("--env", default="Pendulum-v1", help="gymnasium environment id")
    p.add_argument("--policy", default="random", choices=["random", "medium", "expert", "medium-replay"])
    p.add_argument("--steps", type=int, default=10_000, help="transitions to collect")
    p.add_argument("--out", required=True, help="dataset folder (new; see --force)")
    p.add_argument("--source", help="gym run directory whose checkpoints give expert/medium (default: train one "
                   "into OUT-source with the gym trainer)")
    p.add_argument("--train-steps", dest="train_steps", type=int, default=15_000,
                   help="env steps of the source run trained when --source is not given")
    p.add_argument("--noise", type=float, default=0.1, help="behaviour Gaussian std, as a fraction of the action "
                   "half-range (continuous actions)")
    p.add_argument("--epsilon", type=float, default=0.1, help="epsilon-greedy exploration (discrete actions)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.set_defaults(fn=_cmd_data_collect)

    p = add("offline", help="offline RL on a transition dataset: `ratiolab offline train ...`")
    off_sub = p.add_subparsers(dest="offline_command", required=True)
    p = off_sub.add_parser("train", help="train TD3+BC, IQL or PRDC on a dataset; evaluate in its env",
                           formatter_class=_Help)
    p.add_argument("--algo", default="td3bc", help="registered offline learner: td3bc, iql, prdc")
    p.add_argument("--data", required=True, help="dataset folder (ratiolab data collect --out)")
    p.add_argument("--steps", type=int, default=100_000, help="gradient steps")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    p.add_argument("--hidden", help="hidden layer widths, comma-separated (default 256,256)")
    p.add_argument("--eval-every", dest="eval_every", type=int, default=5000, help="gradient steps between evaluations")
    p.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", dest="run_dir", help="run directory (default: a new runs/offline-<algo>-<time>)")
    p.set_defaults(fn=_cmd_offline_train)

    p = add("showcase", help="every objective on one stale sequence, per old-logit source")
    p.set_defaults(fn=_cmd_showcase)

    p = add("demo", help="pre-train (cached) and RL-train on arithmetic; print before/after")
    p.add_argument("--fresh", action="store_true", help="ignore the cached pre-trained base")
    p.set_defaults(fn=_cmd_demo)
    return parser


def _rm_defaults() -> Any:
    from ratiolab.reward_model.train import RMTrainConfig

    return RMTrainConfig()


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file mapping onto TrainConfig (ratiolab config --show prints one)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, nested keys "
                   "included (repeatable), e.g. algo.lr=1e-4, algo.objective_params.clip_low=0.1, task.params.level=3")


def _task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="task.params.KEY=VALUE", help="a task parameter (repeatable), "
                   "e.g. task.params.level=3, task.params={path: data.jsonl}")


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors printed as one line: bad config, run folder, damaged checkpoint (``ratiolab.runs`` loads lazily)."""
    runs = sys.modules.get("ratiolab.runs")
    return (ConfigError, FileExistsError, FileNotFoundError, *((runs.CheckpointError,) if runs else ()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a bad input (config, file, folder, checkpoint) ends in one ``error:`` line on stderr
    and exit code 2, a bug in a traceback."""
    args = build_parser().parse_args(argv)
    console.width, errors.width = _width(sys.stdout), _width(sys.stderr)  # type: ignore[assignment]  # None: measure
    try:
        code: int = args.fn(args)
    except _user_errors() as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        errors.print(Text.assemble(("error: ", "bold red"), message))
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
