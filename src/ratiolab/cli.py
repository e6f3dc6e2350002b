"""The ``ratiolab`` command line: list, pretrain, train, eval, report, demo."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ratiolab.config import ConfigError, load_yaml, override, parse_yaml
from ratiolab.registry import Registry

console = Console()
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
        table.add_row(e.name, e.arxiv or "—", ("(experimental) " if e.experimental else "") + e.summary, params)
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

    if args.what == "objectives":
        console.print(registry_table(OBJECTIVES, "objectives", hide=tuple(COMMON)))
        console.print("every objective also takes: " + ", ".join(f"{k}={v!r}" for k, v in COMMON.items()))
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
    sets = list(args.set or [])
    for flag, key in (("objective", "algo.objective"), ("task", "task.name"), ("model", "policy.model"),
                      ("steps", "steps"), ("run_dir", "run_dir"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")  # a JSON string is a YAML string: paths keep ':' and '#'
    if getattr(args, "resume", None):
        sets.append(f"run_dir={json.dumps(args.resume)}")
    if getattr(args, "async_rl", False):
        sets.append("async_rl.enabled=true")
    if getattr(args, "backend", None):
        sets += ["async_rl.enabled=true", f"async_rl.backend={args.backend}"]
    if getattr(args, "address", None):
        sets.append(f"async_rl.ray_address={args.address}")
    return override(cfg, sets)


def _progress(total: int, start: int = 0) -> Progress:
    return Progress(
        TextColumn("[bold]RL[/bold]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("reward {task.fields[reward]:.3f}  held-out acc {task.fields[accuracy]:.1%}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


def run_training(cfg: Any, resume: bool) -> Any:
    from ratiolab.learner import train

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
        cfg = override(cfg, sets)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    run_dir = Path(args.resume or args.run_dir or f"runs/{cfg.env_id}-{cfg.algo}")
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
    """The task of ``--task`` / ``--level``; an unknown name or level is a one-line error."""
    from ratiolab import tasks

    try:
        return tasks.get(args.task, **({"level": args.level} if args.level is not None else {}))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--task {args.task!r} / --level {args.level}: {err}") from err


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ratiolab.policies.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(task=args.task, preset=args.preset, steps=args.steps, lr=args.lr, seed=args.seed)
    cfg.validate()
    task = _task(args)
    out = Path(args.out or f".cache/ratiolab/pretrained/{args.task}-{args.preset}-cli")
    result = pretrain(task, out, cfg)
    console.print(f"saved {result.n_params:,}-parameter {args.preset} policy to {result.out_dir} "
                  f"in {result.seconds:.1f} s (final loss {result.final_loss:.3f})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ratiolab.policies import check_context, load_policy
    from ratiolab.policies.evaluate import accuracy

    for flag, value in (("--n", args.n), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be a positive integer")
    task = _task(args)
    model, tok = load_policy(args.model)
    problems = task.sample(args.n, split="test", seed=args.seed)
    check_context(model, tok, [p.prompt for p in problems], args.max_new_tokens, f"--task {args.task}")
    acc = accuracy(model, tok, task, problems, greedy=True, max_new_tokens=args.max_new_tokens)
    console.print(f"held-out accuracy of {args.model} on {args.task}: {acc:.1%} ({args.n} problems)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ratiolab.learner.train import PANELS
    from ratiolab.report import write_report
    from ratiolab.runs import RunDir

    run = RunDir.open(args.run)
    out = write_report(run, PANELS, title=f"ratiolab run {run.path.name}")
    console.print(f"report: {out}")
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


def _cmd_showcase(args: argparse.Namespace) -> int:
    from ratiolab.showcase import run

    run(console)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ratiolab.learner.demo import run_demo

    return run_demo(console, run_training, fresh=args.fresh)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratiolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="print a registry as a table")
    p.add_argument("what", choices=["objectives", "advantages", "corrections", "old-logits", "tasks"])
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("train", help="RL-train a policy (language model, or a gym env with --env)")
    p.add_argument("--config", help="YAML file mapping onto TrainConfig")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--objective", help="registered objective (ratiolab list objectives)")
    p.add_argument("--task", help="registered task (ratiolab list tasks)")
    p.add_argument("--model", help="local Hugging Face checkpoint folder to start from")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", dest="run_dir", help="run directory (default from the config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint with "
                   "its stored config (--steps may extend it; other changes are refused)")
    p.add_argument("--async", dest="async_rl", action="store_true", help="asynchronous actor/learner training")
    p.add_argument("--backend", choices=["local", "threads", "process", "ray"],
                   help="async backend (implies --async): local = threads; process for multi-turn tasks")
    p.add_argument("--address", help="Ray cluster address (with --backend ray), e.g. 192.168.0.2:6379")
    p.add_argument("--env", help="gymnasium environment id: train the classic-control track")
    p.add_argument("--algo", help="classic-control algorithm (with --env; default ppo): ppo, mdpo, bpo, props, "
                   "pdppo, pqn, mdpo_off")
    p.add_argument("--preset", help="classic-control preset (with --env), e.g. cartpole-ppo-zoo, cartpole-pqn")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("sweep", help="objective x max_staleness x old_logits x seeds: the staleness lab")
    p.add_argument("--config", help="YAML file for the base TrainConfig")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a base config field")
    p.add_argument("--objectives", default="ppo", help="comma-separated objectives")
    p.add_argument("--staleness", default="0,2,8", help="comma-separated max_staleness values")
    p.add_argument("--old-logits", dest="old_logits", default="snapshot,recompute", help="comma-separated strategies")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--workers", type=int, default=1, help="cells run in parallel processes")
    p.add_argument("--out", default="runs/sweep", help="output folder")
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "pass1"],
                   help="what the table and claims compare: greedy accuracy, or pass@1 (needs eval_samples)")
    p.add_argument("--min-effect", dest="min_effect", type=float, default=0.02,
                   help="smallest effect of practical size: a claimed gain whose 95%% interval lies below it "
                   "did not hold")
    p.add_argument("--plan", action="store_true", help="validate the grid and print its number of runs; run nothing")
    p.set_defaults(fn=_cmd_sweep)

    p = sub.add_parser("pretrain", help="supervised pre-training on task demonstrations")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--level", type=int)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (save_pretrained)")
    p.set_defaults(fn=_cmd_pretrain)

    p = sub.add_parser("eval", help="held-out greedy accuracy of a checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--level", type=int)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=8)
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("report", help="(re)write report.html of a run directory")
    p.add_argument("run")
    p.set_defaults(fn=_cmd_report)

    p = sub.add_parser("ope", help="rank a gym run's checkpoints from logged data (SharpeRatio@k, OPE gate)")
    p.add_argument("run", help="run directory trained with --set checkpoint_every=N --set keep_checkpoints=M")
    p.add_argument("--estimator", default="pdis", help="pdis, snpdis, tis or sntis")
    p.add_argument("--episodes", type=int, default=100, help="logged episodes (and on-policy episodes per candidate)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--behavior-step", dest="behavior_step", type=int, help="behaviour checkpoint (default: latest)")
    p.add_argument("--epsilon", type=float, default=0.1, help="uniform mixed into the behaviour policy")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_cmd_ope)

    p = sub.add_parser("showcase", help="every objective on one stale sequence, per old-logit source")
    p.set_defaults(fn=_cmd_showcase)

    p = sub.add_parser("demo", help="pre-train (cached) and RL-train on arithmetic; print before/after")
    p.add_argument("--fresh", action="store_true", help="ignore the cached pre-trained base")
    p.set_defaults(fn=_cmd_demo)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors printed as one line: bad config, run folder, damaged checkpoint (``ratiolab.runs`` loads lazily)."""
    runs = sys.modules.get("ratiolab.runs")
    return (ConfigError, FileExistsError, FileNotFoundError, *((runs.CheckpointError,) if runs else ()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a bad input (config, file, folder, checkpoint) ends in one ``error:`` line on stderr
    and exit code 2, a bug in a traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
    except _user_errors() as err:
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        errors.print(Text.assemble(("error: ", "bold red"), message))
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
